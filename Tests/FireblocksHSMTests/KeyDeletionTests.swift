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

    /// Successor records others could have written (the state file writable by group or
    /// others) are not read at all: the plan is refused, naming the file and its fix, and a
    /// forged successor never stands in for force. Private again, they retire the user.
    @Test func successorRecordsOthersCouldWriteAreRefused() async throws {
        try await UseCaseWorld.with("del-untrusted", sandbox: { _ in }) { world in
            _ = try await world.onboard(try world.onboarding())
            var successor = try world.onboarding("ci-bot-2")
            successor.replaces = "ci-bot"
            _ = try await world.onboard(successor)
            let file = world.state.appendingPathComponent("onboarding.json").path
            #expect(chmod(file, 0o666) == 0)
            let refused = await #expect(throws: OperationError.self) { try await planned(world, "ci-bot") }
            #expect(refused?.code == .untrustedState)
            #expect(refused?.facts.path == file)
            #expect(refused?.reason.contains("chmod go-w '\(file)'") == true, "\(String(describing: refused))")
            await #expect(throws: OperationError(.untrustedState, "")) { try await delete(world, "ci-bot", force: true) }
            #expect(try world.privateKeyLabels() == ["admin", "ci-bot", "ci-bot-2"], "nothing was destroyed")
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

    /// With the admin key, the deletion asks the API: a user still listed and enabled blocks
    /// it; one disabled, or removed (its recorded id no longer listed), does not.
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
            // What the API showed is recorded, before anything is deleted.
            let how = change == "remove" ? "removed" : "disabled"
            let record = try #require(try world.auditRecords().last { $0.event == KeyDeletion.retiredEvent })
            let userID = try #require(try world.record()?.apiUserID)
            #expect(record.facts["id"]?.text == userID && record.facts["how"]?.text == how && record.facts["name"]?.text == "ci-bot", "\(record.facts)")
            #expect(record.facts["baseURL"]?.text == (try world.sandbox?.baseURL.description).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })

            // A later deletion takes the recorded retirement as evidence, without asking the API
            // (the stand-in is stopped: asking it would fail).
            try await world.sandbox?.stop()
            let again = try await planned(world, "ci-bot")
            #expect(again.blocking.isEmpty, "\(again.backedUsers)")
            #expect(again.backedUsers.first?.retired?.hasPrefix("\(how) at ") == true && again.backedUsers.first?.retired?.contains("audit record \(record.seq)") == true,
                    "\(again.backedUsers)")
            try await delete(world, "ci-bot", force: false)
            #expect(try world.privateKeyLabels() == ["admin"])
            let deleted = try #require(try world.auditRecords().last { $0.event == "key.deleted" })
            #expect(deleted.facts["forced"] == .bool(false))
        }
    }

    /// A recorded retirement is the evidence only for the very user (its recorded id) at the
    /// very API it was created at: one recorded for another id, or at another API, retires
    /// nobody. When the API is asked, its answer wins over the record.
    @Test func aRecordedRetirementOfAnotherUserOrAPIRetiresNobody() async throws {
        try await UseCaseWorld.with("del-recorded", sandbox: { _ in }) { world in
            _ = try await world.onboard(try world.onboarding())
            let userID = try #require(try world.record()?.apiUserID)
            let base = try #require(try world.record()?.baseURL)
            let target = world.target()
            let audit = world.audit
            func recordRetirement(id: String, baseURL: String) async throws {
                let entry = AuditEntry(event: KeyDeletion.retiredEvent, facts: [
                    "name": .string("ci-bot"), "id": .string(id), "baseURL": .string(baseURL), "how": .string("removed")])
                try await BlockingBridge.run {
                    let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: SilentObserver(), auditDirectory: audit)
                    try AuditService(opened: opened, directory: audit, observer: SilentObserver()).record([entry])
                }
            }
            try await recordRetirement(id: UUID().uuidString.lowercased(), baseURL: base)
            try await recordRetirement(id: userID, baseURL: "https://api.fireblocks.io/v1")
            #expect(try await planned(world, "ci-bot").blocking.count == 1)
            try await recordRetirement(id: userID, baseURL: base)
            let recorded = try await planned(world, "ci-bot")
            #expect(recorded.blocking.isEmpty && recorded.backedUsers.first?.retiredByRecord == true, "\(recorded.backedUsers)")

            // Asked, the API's answer wins over the record: the user is listed enabled again.
            let (state, api, keyTarget) = (world.state, try world.api(), world.target(key: "ci-bot"))
            let deletion = try await BlockingBridge.run {
                try KeyDeletion.plan(target: keyTarget, stateDirectory: state, auditDirectory: audit, observer: SilentObserver())
            }
            try await deletion.checkUpstream(adminKey: .label("admin"), api: api)
            #expect(deletion.plan.blocking.count == 1, "\(deletion.plan.backedUsers)")
            #expect(deletion.plan.backedUsers.first?.upstream?.contains("enabled") == true)
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
