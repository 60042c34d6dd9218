import APITestSupport
import AuditTrail
import FireblocksAPI
import FireblocksHSM
import FireblocksSandbox
import Foundation
import Synchronization
import Testing
import TokenKeys

/// The API user's life, through the use cases against the stand-in: created (awaiting the
/// admin quorum), approved, a pairing token, paired, READY and signing its own requests.
@Suite("API-user lifecycle (use cases)")
struct APIUserLifecycleUseCaseTests {
    private static let fast = APIUserLifecycle.WaitPolicy(timeout: 20, interval: 0.05, maximumInterval: 0.2)

    /// Statuses as a wait reported them.
    private final class Seen: Sendable {
        private let statuses = Mutex<[String]>([])
        var all: [String] { statuses.withLock { $0 } }
        func record(_ event: APIUserWaitEvent) {
            if case .status(let user, _) = event { statuses.withLock { $0.append(user.status ?? "?") } }
        }
    }

    private func wait(_ world: UseCaseWorld, _ lookup: APIUserLookup, until status: APIUserStatus,
                      policy: APIUserLifecycle.WaitPolicy = APIUserLifecycleUseCaseTests.fast, seen: Seen = Seen()) async throws -> APIUser {
        try await APIUserLifecycle.wait(token: world.target(key: "admin"), api: try world.api(), lookup: lookup, until: status,
                                        policy: policy, observer: SilentObserver(), onEvent: { seen.record($0) })
    }

    private func pairingToken(_ world: UseCaseWorld, _ lookup: APIUserLookup, key: String? = nil) async throws -> PairingTokenIssue {
        try await APIUserLifecycle.issuePairingToken(token: world.target(key: "admin"), api: try world.api(), lookup: lookup,
                                                     idempotencyKey: key, observer: SilentObserver())
    }

    @Test func createWaitPairThenReadyAndTheUserSignsItsOwnRequests() async throws {
        try await UseCaseWorld.with("life", sandbox: { $0.autoApproveAfter = 0.3; $0.pairAfter = 0.3 }) { world in
            // Created: awaiting approval, so not listed yet.
            let csr = try world.admin.csr(label: "bot")
            let created = try await APIOperations.createAPIUser(
                token: world.target(key: "admin"), api: try world.api(), user: try CreateAPIUser(role: .SIGNER, name: "bot", csrPem: csr),
                idempotencyKey: nil, allowKeyReuse: false, observer: SilentObserver())
            #expect(created.result == "submitted")
            #expect(world.users.count == 1)
            let creation = try #require(try world.auditRecords().last { $0.event == "api-user.created" })
            #expect(creation.facts["via"]?.text == "api-user create")

            // Approved: it waits for activation.
            let seen = Seen()
            let pending = try await wait(world, .name("bot"), until: .PENDING_ACTIVATION, seen: seen)
            #expect(pending.status == "PENDING_ACTIVATION")
            #expect(seen.all.last == "PENDING_ACTIVATION")

            // A pairing token, once: a re-run gets the same token (the key is derived from the user).
            let issued = try await pairingToken(world, .name("bot"))
            #expect(issued.user.id == pending.id)
            // Secrets are compared outside #expect, whose failure message would quote them.
            let secret = issued.pairingToken
            let plausible = FireblocksClient.isPlausiblePairingToken(secret) && secret.count > 20
            #expect(plausible, "the pairing token is not plausible")
            let described = issued.description.contains(secret)
            #expect(!described, "the description leaves the token out")
            let again = try await pairingToken(world, .id(pending.id))
            let same = again.pairingToken == secret
            #expect(same, "a re-run gets the same token")
            #expect(again.idempotencyKey == issued.idempotencyKey)
            // Asked afresh (another key) once the user no longer waits for activation: explained.
            do {
                _ = try await pairingToken(world, .id(pending.id), key: "another-key")
                Issue.record("a second pairing token was issued")
            } catch let error as APIUserLifecycleError {
                #expect(error.code == .notPendingActivation)
                #expect(["PENDING_DEVICE_PAIRING", "READY"].contains(error.status ?? ""), "\(error)")
                let quoted = error.reason.contains(secret)
                #expect(!quoted, "the error quotes the token")
            }

            // Paired: READY, recorded, and the user signs its own requests with its key on the token.
            let ready = try await wait(world, .id(pending.id), until: .READY)
            #expect(ready.status == "READY")
            let details = try await APIUserLifecycle.show(token: world.target(key: "admin"), api: try world.api(), lookup: .id(ready.id),
                                                          observer: SilentObserver())
            #expect(details.status == "READY" && details.anyIPAllowed && details.name == "bot")
            let own = try await APIOperations.request(token: world.target(key: "bot"), api: try world.api(apiKey: ready.id),
                                                      method: "GET", path: "/v1/workspace", body: nil, idempotencyKey: nil,
                                                      observer: SilentObserver())
            #expect(own.status == 200)

            let events = try world.auditEvents()
            #expect(events.filter { $0 == "api-user.pairing-token-issued" }.count == 2)
            #expect(events.contains("api-user.ready"))
            let log = try String(contentsOfFile: try world.auditLogPath, encoding: .utf8)
            let logged = log.contains(secret)
            #expect(!logged, "no pairing token in the audit log")
        }
    }

    @Test func aWaitEndsAtItsTimeoutAndAnUnlistedUserGetsNoPairingToken() async throws {
        try await UseCaseWorld.with("life-end", sandbox: { _ in }) { world in
            let csr = try world.admin.csr(label: "bot")
            _ = try await APIOperations.createAPIUser(
                token: world.target(key: "admin"), api: try world.api(), user: try CreateAPIUser(role: .SIGNER, name: "bot", csrPem: csr),
                idempotencyKey: nil, allowKeyReuse: false, observer: SilentObserver())
            let started = ContinuousClock.now
            do {
                _ = try await wait(world, .name("bot"), until: .READY, policy: .init(timeout: 3, interval: 0.05))
                Issue.record("a user never paired reached READY")
            } catch let error as APIUserLifecycleError {
                #expect(error.code == .timeout)
                #expect(error.status == "PENDING_ACTIVATION")
            }
            #expect(started.duration(to: .now) < .seconds(30), "a 3 s wait did not end at its timeout")

            // A user that is not listed (yet) is waited for, as a creation awaiting approval is.
            await #expect(throws: APIUserLifecycleError(.timeout, "")) {
                _ = try await wait(world, .name("nobody"), until: .READY, policy: .init(timeout: 0.2, interval: 0.05))
            }
            await #expect(throws: APIUserLifecycleError(.notFound, "")) { _ = try await pairingToken(world, .name("nobody")) }
        }
    }

    /// `onboard` with a pairing token and a wait: from keygen to a READY user in one call, the
    /// user it succeeds recorded, and the lifecycle added to the evidence as signed milestones.
    @Test func anOnboardingGoesToAReadyUserWithItsMilestones() async throws {
        try await UseCaseWorld.with("life-onboard", sandbox: { $0.autoApproveAfter = 0.2; $0.pairAfter = 0.2 }) { world in
            let trusted = try await world.trustedAuditKey()
            _ = try await world.onboard(try world.onboarding("old", name: "old-bot"))
            var request = try world.onboarding("new", name: "new-bot")
            request.replaces = "old-bot"
            request.pairingTokenOut = world.files + "/new.token"
            request.waitUntil = .READY
            request.waitPolicy = Self.fast
            // The predecessor is listed once approved.
            _ = try await wait(world, .name("old-bot"), until: .PENDING_ACTIVATION)
            let report = try await world.onboard(request)
            #expect(report.apiUser?.status == "READY")
            #expect(report.replaces == "old-bot")
            #expect(report.replacesUserID == world.users.first { $0.name == "old-bot" }?.id)
            #expect(report.pairingTokenFile == request.pairingTokenOut)
            let attributes = try FileManager.default.attributesOfItem(atPath: world.files + "/new.token")
            #expect(attributes[.posixPermissions] as? Int == 0o600)
            #expect(report.nextSteps.contains { $0.contains("retire 'old-bot'") })
            #expect(try world.record("new")?.replaces == "old-bot")

            let verified = try EvidenceBundle.verify(directory: report.evidence, auditKeyPEM: trusted.publicKeyPEM)
            #expect(verified.milestones == 2, "the pairing token and READY")
            let statement = try Data(contentsOf: URL(fileURLWithPath: report.evidence + "/statement.json"))

            // The predecessor's key retired: a third milestone, the bundle itself untouched.
            let target = world.target(key: "old")
            let (state, audit) = (world.state, world.audit)
            try await BlockingBridge.run {
                try KeyDeletion.plan(target: target, stateDirectory: state, auditDirectory: audit, observer: SilentObserver())
                    .perform(force: true)
            }
            let milestones = try FileManager.default.contentsOfDirectory(atPath: report.evidence + "/milestones").sorted()
            for event in ["api-user-pairing-token-issued", "api-user-ready", "api-user-predecessor-retired"] {
                #expect(milestones.contains { $0.hasSuffix("-" + event) }, "\(event): \(milestones)")
            }
            #expect(try EvidenceBundle.verify(directory: report.evidence, auditKeyPEM: trusted.publicKeyPEM).milestones == 3)
            #expect(try Data(contentsOf: URL(fileURLWithPath: report.evidence + "/statement.json")) == statement)
        }
    }
}
