import ArgumentParser
import AuditTrail
import DurableFiles
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import PKCS11
import TokenKeys

/// `doctor`: what a deployment needs, checked one by one, each failure with what fixes it.
///
/// The local checks run here (no network); the API's run in the companion executable, as a
/// child process (`doctor-network`, a ``NetworkCommand``), so that a companion that is missing
/// or untrusted is a failed check, not the end of the report.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the module, token, PIN source, key, companion, audit trail and the API, with fixes.",
        discussion: """
            One line per check: ✓ it holds, ✗ it does not (and what fixes it), – it was
            not checked (and why). The PIN source is read, never shown; the token is
            logged in to only to check a key (--key) and the audit trail's anchor. With
            an API (--env, --base-url, their variables or a profile) the companion also
            checks the clock against the API's Date header, that the API answers, and
            that it accepts the API key. Exits 0 when every check holds, else with the
            first failure's exit code.

            Examples:
              fireblocks-hsm doctor --module softhsm2 --token fb --pin-source env:HSM_PIN
              fireblocks-hsm doctor --token fb --key ci-bot --api-key "$KEY" \\
                  --env sandbox --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    func run() async throws {
        var checks: [DoctorCheck] = []
        let profile: Profile?
        do {
            profile = try token.loadProfile()
        } catch {
            checks.append(.failed("profile", "\(ErrorReport(error).message)", exit: ErrorReport(error).status))
            profile = nil
        }
        let target: TokenTarget?
        do {
            target = try token.target(key: key.key ?? profile?.key, profile: profile)
        } catch {
            checks.append(.failed("options", ErrorReport(error).message, exit: ErrorReport(error).status))
            target = nil
        }
        if let target {
            checks += (try? await BlockingBridge.run { DoctorChecks.local(target: target) }) ?? []
            checks.append(DoctorChecks.audit(directory: audit.directory(profile: profile), target: target,
                                             canLogIn: checks.contains { $0.name == "pin source" && $0.status == .ok }))
        }
        checks.append(DoctorChecks.auditDisk(directory: audit.directory(profile: profile), threshold: AuditDiskThreshold.processWide))
        checks.append(DoctorChecks.state(directory: APITargetResolution.stateDirectoryURL(flag: api.stateDirectory,
                                                                                         environment: ProcessInfo.processInfo.environment)))
        let pinReadable = checks.contains { $0.name == "pin source" && $0.status == .ok }
        checks.append(DoctorChecks.companion())
        checks += networkChecks(profile: profile, companionTrusted: checks.last?.status == .ok, pinReadable: pinReadable)

        let console = Console()
        if json {
            struct Report: Encodable { let healthy: Bool; let checks: [DoctorCheck] }
            console.output(try JSONOutput.encode(Report(healthy: !checks.contains { $0.status == .failed }, checks: checks)))
        } else {
            console.output(checks.map(\.line).joined())
        }
        if let failure = checks.first(where: { $0.status == .failed }) {
            throw ExitCode(failure.exit.rawValue)
        }
    }

    /// The API's checks, by the companion (a child process), when an API is configured.
    private func networkChecks(profile: Profile?, companionTrusted: Bool, pinReadable: Bool) -> [DoctorCheck] {
        let environment = ProcessInfo.processInfo.environment
        let configured = api.env != nil || api.baseURL != nil || [APIEnvironment.env, APIEnvironment.baseURL].contains { environment[$0]?.isEmpty == false }
            || profile?.env != nil || profile?.baseURL != nil
        guard configured else { return [.skipped("api", "no API given: pass --env or --base-url (and --api-key) to check the clock and the API key")] }
        guard companionTrusted else { return [.skipped("api", "the companion cannot run (see above)")] }
        guard pinReadable else { return [.skipped("api", "its check signs a request on the token: it needs a readable PIN source (see above)")] }
        guard key.key != nil || profile?.key != nil else {
            return [.skipped("api", "no --key: the API and the clock are checked with a request signed by the API user's key on the token")]
        }
        var arguments = Array(CommandLine.arguments.dropFirst())
        guard let index = arguments.firstIndex(of: "doctor") else { return [.skipped("api", "the command line has no 'doctor'")] }
        arguments[index] = DoctorNetworkCommand.configuration.commandName ?? "doctor-network"
        if !arguments.contains("--json") { arguments.append("--json") }
        do {
            let (path, resolved) = try CompanionCommand.locate()
            let output = try ChildProcess.run(resolved, arguments: [path] + arguments)
            guard let checks = try? JSONDecoder().decode([DoctorCheck].self, from: Data(output.standardOutput)) else {
                let detail = TerminalText.sanitized(String(decoding: output.standardError, as: UTF8.self))
                return [.failed("api", "the companion's check did not answer (exit \(output.status)): \(detail)", exit: .internalError)]
            }
            return checks
        } catch {
            return [.failed("api", ErrorReport(error).message, exit: ErrorReport(error).status)]
        }
    }
}

/// `doctor-network`: the API's checks, run by `doctor` in the companion executable.
struct DoctorNetworkCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor-network", abstract: "The API's checks of 'doctor' (run by it).", shouldDisplay: false)

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    func run(network: Network) async throws {
        var checks: [DoctorCheck] = []
        do {
            let profile = try token.loadProfile()
            let target = try token.target(key: key.key ?? profile?.key, profile: profile)
            let apiTarget = try api.target(profile: profile, auditDirectory: nil, transport: network.transport)
            guard target.key != nil else {
                checks.append(.skipped("api key", "no --key: the API key is checked with a request signed by its key"))
                return try emit(checks)
            }
            let session = try await APISession.open(token: target, api: apiTarget, observer: Console())
            do {
                // Any path every API user may read: only whether the API authenticates the key matters.
                let response = try await session.client.send(APIRequest(method: "GET", path: "/v1/vault/accounts_paged?limit=1"))
                checks.append(.ok("api", "\(apiTarget.baseURL) answered HTTP \(response.status)"))
                checks.append(.ok("api key", "accepted"))
            } catch let error as FireblocksAPIError where error.status == 401 {
                checks.append(.ok("api", "\(apiTarget.baseURL) answered HTTP 401"))
                checks.append(.failed("api key", "refused: \(ErrorReport(error).message)", exit: .apiAuthentication))
            } catch let error as FireblocksAPIError where error.status == 403 {
                // Authenticated, but this user may not read vault accounts: the key is accepted.
                checks.append(.ok("api", "\(apiTarget.baseURL) answered HTTP 403 (this API user may not list vault accounts)"))
                checks.append(.ok("api key", "accepted (authenticated; HTTP 403 is about permissions)"))
            } catch let error as FireblocksAPIError {
                // A 404 (a base URL without /v1, a proxy that is not Fireblocks) or a 5xx proves nothing about the key.
                checks.append(.failed("api", ErrorReport(error).message, exit: ErrorReport(error).status))
                checks.append(.skipped("api key", "not known: the API did not answer the check's request"))
            } catch {
                checks.append(.failed("api", ErrorReport(error).message, exit: ErrorReport(error).status))
            }
            if let offset = session.client.clock.lastOffset {
                let seconds = Int(offset.rounded())
                if abs(offset) > 30 {
                    checks.append(.failed("clock", "this host's clock is \(abs(seconds)) s \(offset > 0 ? "behind" : "ahead of") the API's: JWTs are refused beyond about 30 s; sync it (NTP)", exit: .apiAuthentication))
                } else {
                    checks.append(.ok("clock", "within \(max(1, abs(seconds))) s of the API's Date header"))
                }
            } else {
                checks.append(.skipped("clock", "the API's answer had no Date header"))
            }
        } catch {
            checks.append(.failed("api", ErrorReport(error).message, exit: ErrorReport(error).status))
        }
        try emit(checks)
    }

    private func emit(_ checks: [DoctorCheck]) throws {
        Console().output(try JSONOutput.encode(checks))
    }
}

/// One check of `doctor`.
struct DoctorCheck: Codable, Sendable {
    enum Status: String, Codable, Sendable { case ok, failed, skipped }
    let name: String
    let status: Status
    /// What was found, or why it fails (with its fix), or why it was not checked.
    let detail: String
    /// The exit code a failure would have had as a command's error.
    let exit: ExitStatus

    static func ok(_ name: String, _ detail: String) -> Self { Self(name: name, status: .ok, detail: detail, exit: .success) }
    static func failed(_ name: String, _ detail: String, exit: ExitStatus) -> Self { Self(name: name, status: .failed, detail: detail, exit: exit) }
    static func skipped(_ name: String, _ detail: String) -> Self { Self(name: name, status: .skipped, detail: detail, exit: .success) }

    /// `✓ name  detail`, sanitized for the terminal.
    var line: String {
        let mark = switch status { case .ok: "✓"; case .failed: "✗"; case .skipped: "–" }
        let padded = name.count < 12 ? name + String(repeating: " ", count: 12 - name.count) : name + " "
        return "\(mark) \(padded)\(TerminalText.sanitized(detail))\n"
    }
}

extension ExitStatus: Codable {}

/// The local checks of `doctor`.
enum DoctorChecks {
    /// The module, SoftHSM's configuration, the token, the PIN source and the key.
    static func local(target: TokenTarget) -> [DoctorCheck] {
        var checks: [DoctorCheck] = []
        let module: PKCS11Module
        do {
            module = try PKCS11Module.load(target.module)
            let info = try module.info()
            checks.append(.ok("module", "\(target.module) (\(info.manufacturer), Cryptoki \(info.cryptokiVersion.major).\(info.cryptokiVersion.minor)); its file passed the trust check"))
        } catch {
            let report = ErrorReport(error)
            checks.append(.failed("module", withSoftHSMHint(report.message, module: target.module), exit: report.status))
            return checks
        }
        if "\(target.module)".lowercased().contains("softhsm") { checks.append(softHSMConfiguration()) }
        guard let selector = target.token else {
            let count = (try? TokenLocator.tokens(in: module).count) ?? 0
            checks.append(.skipped("token", "no --token given (\(count) token(s) visible: 'fireblocks-hsm token list')"))
            return checks
        }
        do {
            let located = try TokenLocator.locate(selector, in: module)
            checks.append(.ok("token", "'\(located.info.label)' (serial \(located.info.serialNumber), \(located.info.model))"))
        } catch {
            let report = ErrorReport(error)
            checks.append(.failed("token", withSoftHSMHint(report.message, module: target.module), exit: report.status))
            return checks
        }
        switch target.pinSource {
        case .prompt:
            checks.append(.skipped("pin source", "a prompt: nothing to check until a person types it (a long-running proxy wants env:NAME or file:PATH)"))
            return checks
        default:
            do {
                _ = try target.pinSource.readPIN(prompter: nil, promptText: "", warn: { _ in })
                checks.append(.ok("pin source", "\(target.pinSource) is readable (its value is not shown)"))
            } catch {
                checks.append(.failed("pin source", ErrorReport(error).message, exit: ErrorReport(error).status))
                return checks
            }
        }
        if target.key != nil {
            do {
                let report = try KeyOperations.show(target: target, observer: SilentConsole())
                if report.meetsPolicy {
                    checks.append(.ok("key", "'\(report.label)' meets the key policy (sign-only, sensitive, never extractable)"))
                } else {
                    checks.append(.failed("key", "'\(report.label)' fails the key policy: 'fireblocks-hsm key show --key \(TerminalText.shellQuoted(report.label))' lists why", exit: .keyPolicy))
                }
            } catch {
                checks.append(.failed("key", ErrorReport(error).message, exit: ErrorReport(error).status))
            }
        }
        return checks
    }

    /// `message`, with the reminder that SoftHSM without `SOFTHSM2_CONF` reads the system's
    /// configuration, unless the command line's report already gave it (never twice).
    static func withSoftHSMHint(_ message: String, module: ModuleLocation) -> String {
        guard ProcessInfo.processInfo.environment["SOFTHSM2_CONF"] == nil, "\(module)".lowercased().contains("softhsm"),
              !message.contains("SOFTHSM2_CONF") else { return message }
        return message + "; SOFTHSM2_CONF is not set, so SoftHSM reads /etc/softhsm/softhsm2.conf: export SOFTHSM2_CONF=… for a token made elsewhere"
    }

    /// SoftHSM reads `SOFTHSM2_CONF` (else /etc/softhsm/softhsm2.conf) for its token directory.
    static func softHSMConfiguration() -> DoctorCheck {
        let variable = ProcessInfo.processInfo.environment["SOFTHSM2_CONF"]
        let file = variable ?? "/etc/softhsm/softhsm2.conf"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            return .failed("softhsm", "cannot read \(file)\(variable == nil ? " (SOFTHSM2_CONF is not set)" : ""): export SOFTHSM2_CONF=PATH of the configuration that names your token directory", exit: .token)
        }
        let directory = text.split(separator: "\n").compactMap { line -> String? in
            let parts = line.split(separator: "=", maxSplits: 1).map { String($0.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()) }
            return parts.count == 2 && parts[0] == "directories.tokendir" ? parts[1] : nil
        }.first
        guard let directory else { return .failed("softhsm", "\(file) names no directories.tokendir", exit: .token) }
        var status = stat()
        guard stat(directory, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR, access(directory, R_OK | X_OK) == 0 else {
            return .failed("softhsm", "the token directory \(directory) (from \(file)) is missing or unreadable: create it, or point SOFTHSM2_CONF at the right configuration", exit: .token)
        }
        return .ok("softhsm", "tokens in \(directory) (from \(variable == nil ? "the default " : "SOFTHSM2_CONF=")\(file))")
    }

    /// The companion: found beside the executable and trusted, as a network command needs it.
    static func companion() -> DoctorCheck {
        do {
            let (_, resolved) = try CompanionCommand.locate()
            return .ok("companion", "\(resolved) (trusted: yours or root's, writable by nobody else)")
        } catch {
            return .failed("companion", error.description, exit: .fileError)
        }
    }

    /// The audit directory's filesystem: enough free for an operation to start (what every
    /// command that records, and `serve` before each request, requires).
    static func auditDisk(directory: URL, threshold: AuditDiskThreshold) -> DoctorCheck {
        let space: AuditDiskSpace
        do {
            space = try AuditDiskSpace.measure(directory.path)
        } catch {
            return .failed("audit disk", "\(error)", exit: .fileError)
        }
        let minimum = space.minimumFreeBytes(threshold)
        let kept = threshold == .bytes(minimum) ? AuditDiskSpace.format(minimum) : "\(AuditDiskSpace.format(minimum)) (\(threshold))"
        let free = "\(AuditDiskSpace.format(space.availableBytes)) free on the filesystem of \(space.path)"
        guard space.availableBytes >= minimum else {
            return .failed("audit disk", "\(free), less than the \(kept) kept free: every operation that records is refused (serve answers 503); free space there, or move the audit directory (--audit-dir) to a larger filesystem; --audit-min-free lowers the threshold", exit: .fileError)
        }
        return .ok("audit disk", "\(free); operations are refused under \(kept)")
    }

    /// The tool's state (onboarding and idempotency records, locks): what the commands that
    /// read it require of it (private, no links), checked without reading it.
    static func state(directory: URL) -> DoctorCheck {
        let path = directory.path
        do {
            try TrustedFile.verifyPrivateState(path, kind: .directory)
            try TrustedFile.verifyPrivateState(directory.appendingPathComponent("locks").path, kind: .directory)
            for name in ["onboarding.json", "idempotency.json"] {
                let file = directory.appendingPathComponent(name).path
                try TrustedFile.verifyPrivateState(file, kind: .file)
                try TrustedFile.verifyPrivateState(file + ".lock", kind: .file)
            }
        } catch {
            let fix = TrustedFile.remedy(for: error).map { "; once you know nobody else changed it, fix it with: \($0)" } ?? ""
            return .failed("state", "\(error): the onboarding and idempotency records cannot be trusted when others could have written them\(fix)", exit: .fileError)
        }
        guard FileManager.default.fileExists(atPath: path) else { return .ok("state", "\(path) does not exist yet: it is made (0700) by the first onboarding or API call") }
        return .ok("state", "\(path) is private (onboarding and idempotency records, locks)")
    }

    /// The audit trail: its files' ownership and mode, then (logged in) the token's anchor.
    static func audit(directory: URL, target: TokenTarget, canLogIn: Bool) -> DoctorCheck {
        let path = directory.path
        do {
            try TrustedFile.verifyPrivateState(path, kind: .directory)
        } catch {
            let fix = TrustedFile.remedy(for: error).map { "; fix it with: \($0)" } ?? ""
            return .failed("audit", "\(error)\(fix)", exit: .fileError)
        }
        guard FileManager.default.fileExists(atPath: path) else { return .ok("audit", "\(path) does not exist yet: it is made (0700) by the first key operation") }
        guard canLogIn, target.token != nil else { return .skipped("audit", "\(path) is private; its anchor is checked with a token and a readable PIN source") }
        do {
            let verification = try AuditOperations.verify(target: target, directory: directory, external: nil, observer: SilentConsole())
            return .ok("audit", "\(verification.records) record(s) in \(path), extending the checkpoint anchored on the token")
        } catch {
            return .failed("audit", ErrorReport(error).message, exit: ErrorReport(error).status)
        }
    }
}

/// An observer that keeps the doctor's report its only output.
private struct SilentConsole: OperationObserver {
    func note(_ message: String) {}
    func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R { try work() }
    var pinPrompter: (any PINPrompter)? { nil }
}

/// A child process with its standard output and error collected (posix_spawn: the signing
/// binary has no Foundation.Process). The pipes are close-on-exec (the child gets only its
/// standard streams), both are read as they fill (a chatty stderr cannot block the child), and
/// a child that does not finish within `timeout` is killed.
enum ChildProcess {
    struct Output { let status: Int32; let standardOutput: [UInt8]; let standardError: [UInt8] }

    static func run(_ executable: String, arguments: [String], timeout: Duration = .seconds(120)) throws -> Output {
        var output: [Int32] = [-1, -1]
        var error: [Int32] = [-1, -1]
        // pipe2(O_CLOEXEC) is not in Swift's Glibc module: close-on-exec is set right after
        // (doctor starts no other process meanwhile).
        guard pipe(&output) == 0 else { throw CommandLineError("cannot make a pipe (\(String(cString: strerror(errno))))", status: .internalError) }
        guard pipe(&error) == 0 else {
            close(output[0]); close(output[1])
            throw CommandLineError("cannot make a pipe (\(String(cString: strerror(errno))))", status: .internalError)
        }
        for descriptor in output + error { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, output[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, error[1], STDERR_FILENO)
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        let argv = arguments.map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv + [nil], environ)
        close(output[1])
        close(error[1])
        defer { close(output[0]); close(error[0]) }
        guard spawned == 0 else {
            throw CommandLineError("cannot start \(executable) (\(String(cString: strerror(spawned))))", status: .fileError)
        }
        var collected: [[UInt8]] = [[], []]
        var open = [true, true]
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open.contains(true) {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { timedOut = true; break }
            var descriptors = [pollfd(fd: open[0] ? output[0] : -1, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: open[1] ? error[0] : -1, events: Int16(POLLIN), revents: 0)]
            let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&descriptors, 2, milliseconds)
            if ready < 0, errno == EINTR { continue }
            guard ready >= 0 else { break }
            for index in 0..<2 where open[index] && descriptors[index].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { raw -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    return read(index == 0 ? output[0] : error[0], base, raw.count)
                }
                if count > 0, collected[index].count < 16 << 20 { collected[index] += buffer[..<count] }
                if count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN) { open[index] = false }
            }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        if timedOut {
            throw CommandLineError("\(executable) did not finish within \(timeout) and was stopped", status: .apiUnavailable)
        }
        // Exited: its code; killed by a signal: 128 + the signal, as a shell reports it.
        let signal = status & 0x7F
        return Output(status: signal == 0 ? (status >> 8) & 0xFF : 128 + signal, standardOutput: collected[0], standardError: collected[1])
    }
}
