import Foundation
import Synchronization

/// Runs a program and collects its output (for the cross-checks with tools this project did
/// not write, and for running the command line itself).
public struct ProcessResult: Sendable {
    public let status: Int32
    public let standardOutput: String
    public let standardError: String
    public let standardOutputData: Data
}

public enum Subprocess {
    /// Runs `executable` (a path, or a name looked up in PATH) with `arguments`.
    /// Standard input is empty (not a terminal), as in CI.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           input: Data? = nil, workingDirectory: String? = nil) throws -> ProcessResult {
        // A file just written can be briefly "busy" while another test's child sits between
        // fork and exec with the writer's descriptor (see `Executable`): wait that out.
        var attempt = 0
        while true {
            do {
                return try runOnce(executable, arguments, environment: environment, input: input, workingDirectory: workingDirectory)
            } catch let error as NSError where attempt < 50 && Self.isTextFileBusy(error) {
                attempt += 1
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    private static func isTextFileBusy(_ error: NSError) -> Bool {
        if error.domain == NSPOSIXErrorDomain && error.code == Int(ETXTBSY) { return true }
        guard let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError else { return false }
        return underlying.domain == NSPOSIXErrorDomain && underlying.code == Int(ETXTBSY)
    }

    private static func runOnce(_ executable: String, _ arguments: [String], environment: [String: String]?,
                                input: Data?, workingDirectory: String?) throws -> ProcessResult {
        let process = Process()
        if executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        if let environment { process.environment = environment }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let output = Pipe()
        let error = Pipe()
        let inputPipe = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = inputPipe
        try process.run()
        if let input { inputPipe.fileHandleForWriting.write(input) }
        try inputPipe.fileHandleForWriting.close()
        // Read both pipes concurrently so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        let errorData = Mutex(Data())
        group.enter()
        DispatchQueue.global().async {
            let data = error.fileHandleForReading.readDataToEndOfFile()
            errorData.withLock { $0 = data }
            group.leave()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus,
                             standardOutput: String(decoding: outputData, as: UTF8.self),
                             standardError: String(decoding: errorData.withLock { $0 }, as: UTF8.self),
                             standardOutputData: outputData)
    }

    /// True when a program is on PATH.
    public static func isAvailable(_ name: String) -> Bool {
        (try? run("sh", ["-c", "command -v \(name)"]).status) == 0
    }
}
