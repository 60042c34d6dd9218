import APITestSupport
import AuditTrail
import FireblocksHSM
import FireblocksSandbox
import Foundation
import Testing
import TokenKeys

/// `KeyDeletion`: the plan shown before anything is destroyed, the refusal to delete a key an API
/// user depends on, and the deletion a person forces.
@Suite("Key deletion (use case)")
struct KeyDeletionTests {
    private func planned(_ world: UseCaseWorld, _ key: String) async throws -> KeyDeletion.Plan {
        let target = world.target(key: key)
        let (state, audit) = (world.state, world.audit)
        return try await BlockingBridge.run {
            try KeyDeletion.plan(target: target, stateDirectory: state, auditDirectory: audit, observer: SilentObserver()).plan
        }
    }

    private func delete(_ world: UseCaseWorld, _ key: String, force: Bool) async throws {
        let target = world.target(key: key)
        let (state, audit) = (world.state, world.audit)
        try await BlockingBridge.run {
            try KeyDeletion.plan(target: target, stateDirectory: state, auditDirectory: audit, observer: SilentObserver())
                .perform(force: force)
        }
    }

    @Test func aKeyBackingAnAPIUserIsKeptUnlessForced() async throws {
        try await UseCaseWorld.with("del-backed", sandbox: { _ in }) { world in
            let onboarded = try await world.onboard(try world.onboarding())
            let plan = try await planned(world, "ci-bot")
            #expect(plan.items.map(\.kind) == ["private", "public"])
            #expect(plan.items.allSatisfy { $0.fingerprintSHA256 == onboarded.keyFingerprintSHA256 })
            #expect(plan.backs.count == 1)
            #expect(plan.backs.first?.hasPrefix("'ci-bot' (SIGNER, id \(onboarded.apiUser?.id ?? "?")") == true, "\(plan.backs)")

            await #expect(throws: OperationError(.keyInUse, "")) { try await delete(world, "ci-bot", force: false) }
            #expect(try world.privateKeyLabels() == ["admin", "ci-bot"], "nothing was destroyed")
            #expect((try world.record())?.keyLabel == "ci-bot")
            let refusal = try #require(try world.auditRecords().last)
            #expect(refusal.event == "command.failed" && refusal.facts["command"]?.text == "key delete")

            try await delete(world, "ci-bot", force: true)
            #expect(try world.privateKeyLabels() == ["admin"])
            #expect(try world.publicKeys("ci-bot") == 0)
            #expect((try world.record())?.keyLabel == nil, "the onboarding record goes with the key")
            let deleted = try #require(try world.auditRecords().last { $0.event == "key.deleted" })
            #expect(deleted.facts["forced"] == .bool(true))
            #expect(deleted.facts["backedAPIUsers"] == .array(plan.backs.map { .string($0) }))
        }
    }

    /// Rotation: once a successor was onboarded with `replaces`, the predecessor's key goes
    /// without force, and the audit trail says why.
    @Test func aKeyWhoseUserWasSucceededIsDeletedWithoutForce() async throws {
        try await UseCaseWorld.with("del-succeeded", sandbox: { _ in }) { world in
            _ = try await world.onboard(try world.onboarding())
            var successor = try world.onboarding("ci-bot-2")
            successor.replaces = "ci-bot"
            _ = try await world.onboard(successor)
            let plan = try await planned(world, "ci-bot")
            #expect(plan.blocking.isEmpty)
            #expect(plan.backedUsers.first?.retired?.contains("succeeded by API user 'ci-bot-2'") == true, "\(plan.backedUsers)")
            try await delete(world, "ci-bot", force: false)
            #expect(try world.privateKeyLabels() == ["admin", "ci-bot-2"])
            let deleted = try #require(try world.auditRecords().last { $0.event == "key.deleted" })
            #expect(deleted.facts["forced"] == .bool(false))
            guard case .array(let retired)? = deleted.facts["retiredAPIUsers"] else { Issue.record("\(deleted.facts)"); return }
            #expect(retired.count == 1)
            // The successor is not retired by its predecessor's record: its key is still refused.
            await #expect(throws: OperationError(.keyInUse, "")) { try await delete(world, "ci-bot-2", force: false) }
        }
    }

    /// With the admin key, the deletion asks the API: a user still listed and enabled blocks
    /// it; one disabled, or removed (its recorded id no longer listed), does not.
    /// Successor records others could have written (the state file writable by group or
    /// others) retire nobody: a forged successor must not stand in for force.
    @Test func successorRecordsOthersCouldWriteRetireNobody() async throws {
        try await UseCaseWorld.with("del-untrusted", sandbox: { _ in }) { world in
            _ = try await world.onboard(try world.onboarding())
            var successor = try world.onboarding("ci-bot-2")
            successor.replaces = "ci-bot"
            _ = try await world.onboard(successor)
            let file = world.state.appendingPathComponent("onboarding.json").path
            #expect(chmod(file, 0o666) == 0)
            let plan = try await planned(world, "ci-bot")
            #expect(!plan.blocking.isEmpty, "\(plan.backedUsers)")
            #expect(plan.backedUsers.first?.upstream?.contains("not trusted") == true, "\(plan.backedUsers)")
            #expect(chmod(file, 0o600) == 0)
            #expect(try await planned(world, "ci-bot").blocking.isEmpty, "trusted again once its mode is private")
        }
    }

    /// A successor made at another API (a rehearsal against the stand-in, say) retires nobody
    /// at this one: the key stays refused.
    @Test func aSuccessorAtAnotherAPIRetiresNobody() async throws {
        try await UseCaseWorld.with("del-other-api", sandbox: { _ in }) { world in
            _ = try await world.onboard(try world.onboarding())
            var successor = try world.onboarding("ci-bot-2")
            successor.replaces = "ci-bot"
            _ = try await world.onboard(successor)
            let file = world.state.appendingPathComponent("onboarding.json")
            var contents = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            var records = try #require(contents["records"] as? [[String: Any]])
            for index in records.indices where records[index]["name"] as? String == "ci-bot-2" {
                records[index]["baseURL"] = "https://api.fireblocks.io/v1"
            }
            contents["records"] = records
            try JSONSerialization.data(withJSONObject: contents).write(to: file)
            let plan = try await planned(world, "ci-bot")
            #expect(!plan.blocking.isEmpty, "\(plan.backedUsers)")
            await #expect(throws: OperationError(.keyInUse, "")) { try await delete(world, "ci-bot", force: false) }
        }
    }

    @Test(arguments: ["disable", "remove"])
    func theAPIsUserListDecidesWhetherTheUserIsRetired(change: String) async throws {
        let stateFile = FileManager.default.temporaryDirectory.appendingPathComponent("del-upstream-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: stateFile) }
        try await UseCaseWorld.with("del-upstream", sandbox: { $0.stateFile = stateFile }) { world in
            _ = try await world.onboard(try world.onboarding())
            let target = world.target(key: "ci-bot")
            let (state, audit, api) = (world.state, world.audit, try world.api())
            func checked() async throws -> KeyDeletion {
                let deletion = try await BlockingBridge.run {
                    try KeyDeletion.plan(target: target, stateDirectory: state, auditDirectory: audit, observer: SilentObserver())
                }
                try await deletion.checkUpstream(adminKey: .label("admin"), api: api)
                return deletion
            }
            let active = try await checked()
            #expect(active.plan.blocking.count == 1)
            #expect(active.plan.backedUsers.first?.upstream?.contains("enabled") == true, "\(active.plan.backedUsers)")
            #expect(throws: OperationError(.keyInUse, "")) { try active.checkMayDelete(force: false) }
            let listing = try #require(try world.auditRecords().last { $0.event == "api.call" })
            #expect(listing.facts["uri"]?.text == "/v1/management/api_users", "the listing is in the audit trail: \(listing.facts)")

            var sandboxState = try SandboxState.load(from: stateFile)
            let index = try #require(sandboxState.users.firstIndex { $0.name == "ci-bot" })
            if change == "remove" { sandboxState.users.remove(at: index) } else { sandboxState.users[index].enabled = false }
            try sandboxState.save(to: stateFile)

            let retired = try await checked()
            #expect(retired.plan.blocking.isEmpty, "\(retired.plan.backedUsers)")
            #expect(retired.plan.backedUsers.first?.retired?.contains(change == "remove" ? "absent" : "disabled") == true)
            try await BlockingBridge.run(moving: retired) { try $0.perform(force: false) }
            #expect(try world.privateKeyLabels() == ["admin"])
        }
    }

    /// A key no user depends on goes without force, both halves; the audit trail says what went.
    @Test func aFreeKeyIsDeletedWithBothHalvesAndRecorded() async throws {
        try await UseCaseWorld.with("del-free") { world in
            let onboarded = try await world.onboard(try world.onboarding(submit: false))
            let plan = try await planned(world, "ci-bot")
            #expect(plan.backs.isEmpty, "an onboarding that was never submitted backs nobody")
            #expect(plan.token == world.token.label)
            try await delete(world, "ci-bot", force: false)
            #expect(try world.privateKeyLabels() == ["admin"])
            let deleted = try #require(try world.auditRecords().last)
            #expect(deleted.event == "key.deleted")
            #expect(deleted.facts["forced"] == .bool(false))
            guard case .array(let objects)? = deleted.facts["objects"] else { Issue.record("no objects: \(deleted.facts)"); return }
            #expect(objects.count == 2)
            #expect(objects.allSatisfy {
                if case .object(let object) = $0 { return object["spkiSHA256"]?.text == onboarded.keyFingerprintSHA256 }
                return false
            })
            await #expect(throws: OperationError(.keyNotFound, "")) { _ = try await planned(world, "ci-bot") }
        }
    }

    /// What an interrupted `key generate` leaves (the public half alone) blocks the label, is
    /// planned as that one object, and once deleted the label is free again.
    @Test(.enabled(if: FaultInjection.isAvailable))
    func theLonePublicHalfOfAnInterruptedGenerationIsPlannedAloneAndDeleted() async throws {
        try await UseCaseWorld.with("del-half") { world in
            let target = world.target(key: "half")
            let (state, audit) = (world.state, world.audit)
            let generate: @Sendable () throws -> KeyReport = {
                try KeyOperations.generate(target: target, bits: 2048, id: nil, stateDirectory: state, lockTimeout: 5,
                                           auditDirectory: audit, observer: SilentObserver())
            }
            await #expect(throws: FaultInjection.Interrupted(point: "keygen-between-copies")) {
                try await FaultInjection.$interruption.withValue("keygen-between-copies") { try await BlockingBridge.run(generate) }
            }
            #expect(try world.publicKeys("half") == 1)
            await #expect(throws: TokenKeysError(.orphanedPublicKey, "")) { try await BlockingBridge.run(generate) }

            let plan = try await planned(world, "half")
            #expect(plan.items.map(\.kind) == ["public"])
            #expect(plan.items.first?.fingerprintSHA256?.count == 64)
            try await delete(world, "half", force: false)
            #expect(try world.publicKeys("half") == 0)
            #expect(try await BlockingBridge.run(generate).meetsPolicy)
        }
    }
}
