import ArgumentParser
@testable import FireblocksHSMCommandLine
import Foundation
import ProxySettings
import Testing

/// `serve`'s client-token file holds secrets: the process that serves reads it once (its
/// `validate()`, whose result the proxy starts with), and `fireblocks-hsm` only checks it before
/// the hand-over, without reading it.
@Suite("serve: the client-token file")
struct ServeClientTokensTests {
    private func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return path
    }

    private func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
    }

    @Test func theServingProcessReadsTheFileOnce() throws {
        let base = try directory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let file = base + "/clients"
        try write("payouts 0123456789abcdef0123\n", to: file)
        #expect(try ServeCommand.clientTokens(file).count == 1)
        try write("payouts 0123456789abcdef0123\nreports fedcba98765432100123\n", to: file)
        #expect(try ServeCommand.clientTokens(file).count == 1, "read once: the proxy starts with what validate() read")
        #expect(try ClientTokens(file: file).count == 2)
    }

    @Test func theFrontOnlyChecksTheFile() throws {
        let base = try directory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let file = base + "/clients"
        // Not a client-token file at all: its content is not read, so not refused here (the
        // companion reads it, and refuses it with the same usage error).
        try write("this is not NAME TOKEN\n", to: file)
        try ClientTokens.check(file: file)
        let command = try ServeCommand.parse(["--listen", "127.0.0.1:8787", "--allow", "GET /v1/workspace", "--client-token-file", file])
        #expect(try command.settings(readingClientTokens: false).clients == nil)
        #expect(throws: ValidationError.self) { try command.settings() }
        // What would make the read refuse the file is found without reading it.
        chmod(file, 0o640)
        let refused = #expect(throws: ProxySettingError.self) { try ClientTokens.check(file: file) }
        #expect(refused?.reason.contains("readable by group or others") == true)
        #expect(throws: (any Error).self) {
            try ServeCommand.parse(["--listen", "127.0.0.1:8787", "--allow", "GET /v1/workspace", "--client-token-file", file])
        }
    }
}
