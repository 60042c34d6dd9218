import Foundation
import Testing
import TransactionPolicy

/// The policy decides what the token signs: the proxy reads it only from a file nobody else
/// can write; its SHA-256 is the file's.
@Suite struct PolicyFileTests {
    @Test func aFileOthersCanWriteIsRefusedAndTheDigestIsTheFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("policy-file-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("policy.yaml").path
        let text = "version: 1\ndefault:\n  routes: [GET /v1/vault/accounts_paged]\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let file = try PolicyFile(path: path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(printed.hasPrefix(file.sha256 + " "), "the digest is the file's, as sha256sum reads it")

        try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: path)
        #expect(throws: PolicyError.self) { try PolicyFile(path: path) }
        do {
            _ = try PolicyFile(path: path)
        } catch {
            #expect(error.code == .untrusted)
            #expect(error.reason.contains("chmod go-w"), "\(error.reason)")
        }
        // A draft may still be checked.
        #expect(try PolicyFile(path: path, trusted: false).sha256 == file.sha256)
    }
}
