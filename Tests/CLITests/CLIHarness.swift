import Foundation
import SoftHSMTestSupport
import Testing

/// Runs the built `fireblocks-hsm` against a SoftHSM token directory of the test's own,
/// created with `hsm-config/create-token` as users' CI does.
struct CLIHarness {
    /// The executable `swift build` put next to the test bundle.
    static let binary: String = {
        if let path = ProcessInfo.processInfo.environment["FIREBLOCKS_HSM_BINARY"] { return path }
        let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundleDirectory.appendingPathComponent("fireblocks-hsm").path
    }()

    /// The stand-in's executable, beside the tool.
    static let sandboxBinary: String = {
        if let path = ProcessInfo.processInfo.environment["FIREBLOCKS_SANDBOX_BINARY"] { return path }
        return URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("fireblocks-sandbox").path
    }()

    /// The repository root (for hsm-config/).
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }()

    let directory: TokenDirectory
    let label: String
    let userPIN: String
    let securityOfficerPIN: String
    /// A scratch directory for output files.
    let files: String

    /// Makes a token directory with one token, through hsm-config/create-token.
    init(label: String = "fb", mechanisms: String = "ALL") throws {
        directory = try TokenDirectory(prefix: "fbhsm-cli")
        self.label = label
        userPIN = "user-" + UUID().uuidString.prefix(8)
        securityOfficerPIN = "so-" + UUID().uuidString.prefix(8)
        files = directory.path + "/files"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        try addToken(label: label, mechanisms: mechanisms)
    }

    /// Adds another token to the same directory (SoftHSM keeps offering a free slot).
    func addToken(label: String, mechanisms: String = "ALL") throws {
        let result = try Subprocess.run(Self.repository + "/hsm-config/create-token", [
            "--dir", directory.path, "--label", label,
            "--so-pin-source", "env:TEST_SO_PIN", "--pin-source", "env:TEST_HSM_PIN",
            "--fireblocks-hsm", Self.binary, "--mechanisms", mechanisms,
        ], environment: environment())
        guard result.status == 0 else {
            throw TestSupportError("create-token failed (\(result.status)): \(result.standardError)")
        }
        guard result.standardOutput == "export SOFTHSM2_CONF=\(directory.configPath)\n" else {
            throw TestSupportError("create-token printed \(result.standardOutput.debugDescription)")
        }
    }

    /// The environment of every child: this directory's SoftHSM, the PINs in variables the
    /// commands are pointed at, none of the user's FIREBLOCKS_HSM_* settings.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var environment = directory.environment.filter { !$0.key.hasPrefix("FIREBLOCKS_HSM_") }
        // Records and locks of this test's own, never the user's state directory.
        environment["FIREBLOCKS_HSM_STATE_DIR"] = directory.path + "/state"
        environment["FIREBLOCKS_HSM_AUDIT_DIR"] = directory.path + "/audit"
        environment["TEST_HSM_PIN"] = userPIN
        environment["TEST_SO_PIN"] = securityOfficerPIN
        environment.merge(extra) { $1 }
        return environment
    }

    /// Runs the tool with `--module` set to SoftHSM (unless `module` says otherwise).
    @discardableResult
    func run(_ arguments: [String], module: String? = SoftHSM.modulePath, environment extra: [String: String] = [:]) throws -> ProcessResult {
        var arguments = arguments
        if let module, !arguments.contains("--module"), arguments.first != "--help" {
            arguments += ["--module", module]
        }
        return try Subprocess.run(Self.binary, arguments, environment: environment(extra), workingDirectory: files)
    }

    /// Runs the stand-in's executable (no module flag) in the scratch directory.
    @discardableResult
    func runSandbox(_ arguments: [String]) throws -> ProcessResult {
        try Subprocess.run(Self.sandboxBinary, arguments, environment: environment(), workingDirectory: files)
    }

    /// Runs a token command with `--token` and the user PIN from the environment.
    @discardableResult
    func runOnToken(_ arguments: [String], environment extra: [String: String] = [:]) throws -> ProcessResult {
        try run(arguments + ["--token", label, "--pin-source", "env:TEST_HSM_PIN"], environment: extra)
    }

    /// Runs a token command as ``runOnToken(_:environment:)`` does, under a file-size limit
    /// (bash's `ulimit -f`, in KiB): what a full disk or a quota does to a write.
    func runOnToken(_ arguments: [String], fileSizeLimitKiB: Int) throws -> ProcessResult {
        let arguments = arguments + ["--token", label, "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath]
        return try Subprocess.run("/bin/bash", ["-c", "ulimit -f \(fileSizeLimitKiB) && exec \"$0\" \"$@\"", Self.binary] + arguments,
                                  environment: environment(), workingDirectory: files)
    }

    /// The token's audit log (`<serial>.jsonl` in the harness's audit directory).
    func auditLogPath() throws -> String {
        let audit = directory.path + "/audit"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: audit).first { $0.hasSuffix(".jsonl") })
        return audit + "/" + name
    }

    func remove() { directory.remove() }

    /// Whether `condition` holds within `seconds`, checked every 20 ms: for waiting on something
    /// a test can observe (a line in a log, a file), never for a while.
    static func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < deadline else { return false }
            usleep(20_000)
        }
        return true
    }
}

extension ProcessResult {
    /// The JSON document on stdout.
    func json() throws -> Any {
        try JSONSerialization.jsonObject(with: standardOutputData)
    }

    /// Standard error, without the progress lines slow operations print.
    var errorLines: [String] {
        standardError.split(separator: "\n").map(String.init).filter { !$0.hasSuffix("…") }
    }
}
