import APITestSupport
import AsyncHTTPTransport
import AuditTrail
import FireblocksAPI
import FireblocksHSM
import FireblocksSandbox
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys

/// One test's world, as a Swift service would hold it: a SoftHSM token of its own with an admin
/// key, its PIN in a 0600 file, a state and an audit directory of its own, and (when asked) the
/// stand-in on a loopback port that trusts the admin key. The use cases are called directly.
final class UseCaseWorld {
    let admin: TokenAdmin
    let directory: URL
    let sandbox: RunningSandbox?
    let pinFile: String

    var token: TestToken { admin.token }
    var state: URL { directory.appendingPathComponent("state") }
    var audit: URL { directory.appendingPathComponent("audit") }
    /// Where CSRs, tokens and evidence bundles go.
    var files: String { directory.path }

    private init(admin: TokenAdmin, directory: URL, sandbox: RunningSandbox?, pinFile: String) {
        self.admin = admin
        self.directory = directory
        self.sandbox = sandbox
        self.pinFile = pinFile
    }

    /// A world; with `sandbox`, the stand-in too, configured by it.
    static func make(_ label: String, sandbox configure: ((inout SandboxConfiguration) -> Void)? = nil) async throws -> UseCaseWorld {
        let admin = try TokenAdmin(label: label)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("usecase-\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let pinFile = directory.appendingPathComponent("pin").path
        try admin.token.userPINString.write(toFile: pinFile, atomically: true, encoding: .utf8)
        chmod(pinFile, 0o600)
        var sandbox: RunningSandbox?
        if let configure {
            var configuration = SandboxConfiguration(trusted: [try admin.trusted()])
            configure(&configuration)
            sandbox = try await RunningSandbox.start(configuration)
        }
        return UseCaseWorld(admin: admin, directory: directory, sandbox: sandbox, pinFile: pinFile)
    }

    /// Runs `body` in a new world and takes the world down afterwards, whatever happened.
    static func with<R>(_ label: String, sandbox configure: ((inout SandboxConfiguration) -> Void)? = nil,
                        _ body: (UseCaseWorld) async throws -> R) async throws -> R {
        let world = try await make(label, sandbox: configure)
        do {
            let result = try await body(world)
            await world.close()
            return result
        } catch {
            await world.close()
            throw error
        }
    }

    func close() async {
        try? await sandbox?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// The token (and a key on it), the PIN from the world's file.
    func target(key: String? = nil) -> TokenTarget {
        TokenTarget(module: .path(SoftHSM.modulePath), token: .label(token.label), key: key.map { .label($0) },
                    pinSource: .file(pinFile))
    }

    /// The stand-in, as the admin (or `apiKey`), with every call recorded in the audit trail.
    func api(apiKey: String? = nil, options: ClientOptions = RunningSandbox.fastOptions()) throws -> APITarget {
        let sandbox = try #require(sandbox, "this world has no stand-in")
        return APITarget(baseURL: try sandbox.baseURL, apiKey: apiKey ?? admin.apiKey, options: options, jwtLifetime: 55,
                         stateDirectory: state, auditDirectory: audit, transport: AsyncHTTPClientTransport())
    }

    /// An onboarding of `key` (named after it unless `name` says otherwise), submitted to the
    /// stand-in with the admin key when `submit`.
    func onboarding(_ key: String = "ci-bot", name: String? = nil, role: APIUserRole = .SIGNER, organization: String = "Acme",
                    submit: Bool = true, idempotencyKey: String? = nil,
                    options: ClientOptions = RunningSandbox.fastOptions()) throws -> OnboardRequest {
        OnboardRequest(
            keyLabel: key, bits: 2048, subject: try CSRSubject(commonName: key, organization: organization),
            csrPath: files + "/\(key).csr", overwriteCSR: false, name: name ?? key, role: role, coSignerSetupType: nil,
            coSignerSetupIsFirstUser: nil,
            submission: submit ? OnboardRequest.Submission(adminKey: .label("admin"), api: try api(options: options),
                                                           idempotencyKey: idempotencyKey) : nil)
    }

    /// Runs (or resumes) an onboarding; with `interruptAt`, it stops at that fault point by
    /// throwing ``FaultInjection/Interrupted``, as a process killed there would have stopped.
    func onboard(_ request: OnboardRequest, observer: RecordingObserver = RecordingObserver(),
                 interruptAt point: String? = nil) async throws -> OnboardReport {
        try await FaultInjection.$interruption.withValue(point) {
            try await Onboarding.run(token: target(), request: request, stateDirectory: state, auditDirectory: audit,
                                     observer: observer)
        }
    }

    /// The users the stand-in created.
    var users: [SandboxState.CreatedUser] { sandbox?.service.snapshot.users ?? [] }

    /// Labels of the token's private keys, sorted; the audit key (EC, made on first need) left out.
    func privateKeyLabels() throws -> [String] {
        try admin.session.findObjects([.class(.privateKey)]).compactMap { handle in
            let attributes = try admin.session.attributes([.label], of: handle)
            if case .label(let label)? = attributes[.label]?.attribute, label != AuditService.auditKeyLabel { return label }
            return nil
        }.sorted()
    }

    /// How many public keys carry `label`.
    func publicKeys(_ label: String) throws -> Int {
        try admin.session.findObjects([.class(.publicKey), .label(label)]).count
    }

    var serial: String { get throws { try token.slot.tokenInfo().serialNumber } }

    /// This machine's onboarding record of `key`.
    func record(_ key: String = "ci-bot") throws -> OnboardingRecord? {
        try OnboardingRecords(stateDirectory: state).record(tokenSerial: serial, keyLabel: key)
    }

    /// The token's audit log.
    var auditLogPath: String {
        get throws {
            let info = try token.slot.tokenInfo()
            return AuditLog(directory: audit, token: .init(serial: info.serialNumber, label: info.label),
                            tool: .init(name: "fireblocks-hsm", version: "test")).logPath
        }
    }

    /// The audit log's records.
    func auditRecords() throws -> [AuditRecord] {
        let text = try String(contentsOfFile: auditLogPath, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8)) }
    }

    /// The events of the audit log, in order.
    func auditEvents() throws -> [String] { try auditRecords().map(\.event) }

    /// The audit key's public key, as an auditor records it (made if there is none yet).
    func trustedAuditKey() async throws -> AuditOperations.KeyReport {
        let target = target()
        let audit = audit
        return try await BlockingBridge.run { try AuditOperations.initialize(target: target, directory: audit, observer: SilentObserver()) }
    }
}

extension AuditValue {
    /// The string, when it is one.
    var text: String? { if case .string(let value) = self { return value } else { return nil } }
}
