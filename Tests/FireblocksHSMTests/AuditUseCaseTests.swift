import APITestSupport
import AuditTrail
import Crypto
import FireblocksHSM
import Foundation
import HexEncoding
import Testing
import TokenKeys
import TransparencyLog

/// The audit trail and the evidence bundle through the use cases: records appended and sealed on
/// the token, verified against the token's checkpoint, the file's and an auditor's; a bundle
/// verified with the audit key an auditor recorded, and every kind of edit to it refused.
@Suite("Audit trail and evidence (use cases)")
struct AuditUseCaseTests {
    /// The audit service of the world's token, for `work` on a thread of its own.
    private func withService<R: Sendable>(_ world: UseCaseWorld,
                                          _ work: @escaping @Sendable (AuditService) throws -> R) async throws -> R {
        let target = world.target()
        let audit = world.audit
        return try await BlockingBridge.run {
            let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: SilentObserver(), auditDirectory: audit)
            return try work(AuditService(opened: opened, directory: audit, observer: SilentObserver()))
        }
    }

    private func verify(_ world: UseCaseWorld, external: String? = nil) async throws -> AuditService.Verification {
        let target = world.target()
        let audit = world.audit
        return try await BlockingBridge.run {
            try AuditOperations.verify(target: target, directory: audit, external: external, observer: SilentObserver())
        }
    }

    @Test func recordsAreAppendedSealedOnTheTokenAndVerified() async throws {
        try await UseCaseWorld.with("audit-seal") { world in
            let key = try await world.trustedAuditKey()
            #expect(key.created)
            #expect(key.label == AuditService.auditKeyLabel)
            let again = try await world.trustedAuditKey()
            #expect(!again.created && again.spkiSHA256 == key.spkiSHA256, "one audit key per token")

            // One sealed append, then the proxy's way: appends without a checkpoint, sealed once.
            let (first, sealed) = try await withService(world) { service in
                let first = try service.record([AuditEntry(event: "test.recorded", facts: ["n": .integer(1)])])
                let appender = try service.appender()
                _ = try appender.append([AuditEntry(event: "test.appended", facts: ["n": .integer(2)]),
                                         AuditEntry(event: "test.appended", facts: ["n": .integer(3)])])
                return (first.formatted, try service.seal(appender).formatted)
            }
            let records = try world.auditRecords()
            #expect(records.map(\.event).suffix(3) == ["test.recorded", "test.appended", "test.appended"])
            #expect(records.enumerated().allSatisfy { $0.offset == $0.element.seq }, "line i is record i")
            let sealedTree = try Checkpoint(noteText: try SignedNote(parsing: sealed).text)
            #expect(sealedTree.treeSize == records.count, "the seal covers every record")

            // The token's checkpoint is the last seal, signed by the audit key.
            let target = world.target()
            let audit = world.audit
            let checkpoint = try await BlockingBridge.run {
                try AuditOperations.checkpoint(target: target, directory: audit, observer: SilentObserver())
            }
            #expect(checkpoint == sealed)
            let publicKey = try P256.Signing.PublicKey(pemRepresentation: key.publicKeyPEM)
            #expect(try SignedNote(parsing: sealed).verify(name: sealedTree.origin, publicKey: publicKey) == .verified)

            // The whole trail verifies against the token's, the file's and an auditor's older checkpoint.
            let verified = try await verify(world, external: first)
            #expect(verified.records == records.count)
            #expect(verified.auditKeySHA256 == key.spkiSHA256)
            #expect(verified.checkedAgainst.map { String($0.prefix { $0 != " " }) } == ["token", "file", "given"], "\(verified.checkedAgainst)")
            let shown = try await BlockingBridge.run {
                try AuditOperations.show(target: target, directory: audit, since: nil, event: "test.appended", observer: SilentObserver())
            }
            #expect(shown.map { $0.facts["n"] } == [.integer(2), .integer(3)])
        }
    }

    @Test(arguments: ["edit", "delete", "truncate"])
    func anEditedLogIsRefusedAndNothingIsAppendedToIt(change: String) async throws {
        try await UseCaseWorld.with("audit-tamper") { world in
            let sealed = try await withService(world) { service -> Int in
                _ = try service.record([AuditEntry(event: "test.a", facts: ["who": .string("alice")])])
                _ = try service.record([AuditEntry(event: "test.b", facts: ["who": .string("bob")])])
                return 2
            }
            #expect(sealed == 2)
            let path = try world.auditLogPath
            var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
            switch change {
            case "edit": lines[lines.count - 2] = lines[lines.count - 2].replacingOccurrences(of: "alice", with: "mallory")
            case "delete": lines.remove(at: lines.count - 2)
            default: lines.removeLast()
            }
            // Rewritten in place (same file, same mode), as someone with write access would.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
            try handle.close()
            await #expect(throws: AuditError(.inconsistent, "")) { _ = try await verify(world) }
            await #expect(throws: AuditError.self, "no record is appended to a log that does not extend the token's checkpoint") {
                _ = try await withService(world) { service -> Int in
                    _ = try service.record([AuditEntry(event: "test.after")])
                    return 0
                }
            }
            #expect(try String(contentsOfFile: path, encoding: .utf8) == lines.joined(separator: "\n") + "\n")
        }
    }

    // MARK: Evidence

    /// Every way an evidence bundle can be changed is refused by `EvidenceBundle.verify`: each
    /// file is bound by SHA256SUMS and the statement, both signed by the audit key.
    @Test func anEvidenceBundleVerifiesAndATamperedCopyIsRefused() async throws {
        try await UseCaseWorld.with("evidence", sandbox: { _ in }) { world in
            let trusted = try await world.trustedAuditKey()
            let report = try await world.onboard(try world.onboarding())
            let bundle = report.evidence
            let verified = try EvidenceBundle.verify(directory: bundle, auditKeyPEM: trusted.publicKeyPEM)
            #expect(verified.kind == "onboarding" && verified.milestones == 0)
            for file in ["api_user.csr", "public-key.pem", "key-attributes.json", "token.json", "api-exchange.json", "checkpoint", "audit-key.pem"] {
                #expect(verified.files.contains(file), "\(file): \(verified.files)")
            }
            #expect(try String(contentsOfFile: bundle + "/api-exchange.json", encoding: .utf8).contains("\"SIGNER\""))

            func tampered(_ change: (String) throws -> Void) throws -> String {
                let copy = world.files + "/copy-\(UUID().uuidString.prefix(8))"
                try FileManager.default.copyItem(atPath: bundle, toPath: copy)
                try change(copy)
                return copy
            }
            func edit(_ file: String, in folder: String, _ from: String, _ to: String) throws {
                let text = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
                #expect(text.contains(from), "\(file) has no '\(from)'")
                try text.replacingOccurrences(of: from, with: to).write(toFile: folder + "/" + file, atomically: true, encoding: .utf8)
            }
            /// SHA256SUMS rewritten for the files as they are now, as an attacker would.
            func resum(_ folder: String) throws {
                let lines = try String(contentsOfFile: folder + "/SHA256SUMS", encoding: .utf8).split(separator: "\n").map { line in
                    let name = String(line.split(separator: " ", maxSplits: 1)[1].dropFirst())
                    let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
                    return "\(hex(SHA256.hash(data: data)))  \(name)"
                }
                try (lines.joined(separator: "\n") + "\n").write(toFile: folder + "/SHA256SUMS", atomically: true, encoding: .utf8)
            }
            let attacks: [(String, String, (String) throws -> Void)] = [
                ("a file edited", "token.json is not the file SHA256SUMS signed", { try edit("token.json", in: $0, "SoftHSM", "LunaHSM") }),
                ("the role made ADMIN, sums rewritten", "SHA256SUMS.sig does not verify", {
                    try edit("api-exchange.json", in: $0, "SIGNER", "ADMIN")
                    try resum($0)
                }),
                ("the statement edited", "statement.json is not the envelope's signed payload", {
                    try edit("statement.json", in: $0, "SIGNER", "ADMIN")
                }),
                ("a record's proof swapped", "", { folder in
                    let proofs = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".tlog-proof") }.sorted()
                    try #require(proofs.count >= 2)
                    try FileManager.default.removeItem(atPath: folder + "/" + proofs[0])
                    try FileManager.default.copyItem(atPath: folder + "/" + proofs[1], toPath: folder + "/" + proofs[0])
                }),
                ("a file removed", "the evidence has no readable public-key.pem", {
                    try FileManager.default.removeItem(atPath: $0 + "/public-key.pem")
                }),
            ]
            for (attack, reason, change) in attacks {
                let copy = try tampered(change)
                do {
                    _ = try EvidenceBundle.verify(directory: copy, auditKeyPEM: trusted.publicKeyPEM)
                    Issue.record("\(attack): the bundle verified")
                } catch let error as OperationError {
                    #expect(error.code == .auditInconsistent || error.code == .auditUnreadable, "\(attack): \(error)")
                    #expect(reason.isEmpty || error.reason.contains(reason), "\(attack): \(error.reason)")
                }
            }

            // Another key than the one the auditor recorded: nothing of the bundle is trusted.
            let stranger = P256.Signing.PrivateKey().publicKey.pemRepresentation
            #expect(throws: OperationError(.auditInconsistent, "")) { try EvidenceBundle.verify(directory: bundle, auditKeyPEM: stranger) }
            // The untouched bundle still verifies.
            #expect(try EvidenceBundle.verify(directory: bundle, auditKeyPEM: trusted.publicKeyPEM) == verified)
        }
    }

    // MARK: Whoever can write the audit directory (the CLI's CLIAuditAttackTests check the exit codes)

    private func sealedTwice(_ world: UseCaseWorld) async throws {
        _ = try await withService(world) { service -> Int in
            _ = try service.record([AuditEntry(event: "test.a")])
            _ = try service.record([AuditEntry(event: "test.b")])
            return 0
        }
    }

    /// An older log and its older checkpoint file put back (the cache removed): the token's
    /// anchor moved on, so nothing is appended or signed over the rollback.
    @Test func anOlderLogPutBackIsNeverSignedOver() async throws {
        try await UseCaseWorld.with("audit-rollback") { world in
            try await sealedTwice(world)
            let log = try world.auditLogPath
            let base = String(log.dropLast(".jsonl".count))
            let older = (log: try Data(contentsOf: URL(fileURLWithPath: log)), checkpoint: try Data(contentsOf: URL(fileURLWithPath: base + ".checkpoint")))
            _ = try await withService(world) { service -> Int in _ = try service.record([AuditEntry(event: "test.c")]); return 0 }
            try older.log.write(to: URL(fileURLWithPath: log))
            try older.checkpoint.write(to: URL(fileURLWithPath: base + ".checkpoint"))
            try? FileManager.default.removeItem(atPath: base + ".tree")
            await #expect(throws: AuditError.self) {
                _ = try await withService(world) { service -> Int in _ = try service.record([AuditEntry(event: "test.after")]); return 0 }
            }
            await #expect(throws: (any Error).self) { _ = try await verify(world) }
            #expect(try Data(contentsOf: URL(fileURLWithPath: log)) == older.log, "nothing was appended to the rolled-back log")
        }
    }

    /// A checkpoint file ahead of the token's anchor was not written by an append: refused.
    @Test func aCheckpointFileAheadOfTheAnchorIsRefused() async throws {
        try await UseCaseWorld.with("audit-ahead") { world in
            try await sealedTwice(world)
            let checkpoint = String(try world.auditLogPath.dropLast(".jsonl".count)) + ".checkpoint"
            var note = try String(contentsOfFile: checkpoint, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            note[1] = String((Int(note[1]) ?? 0) + 5)
            try note.joined(separator: "\n").write(toFile: checkpoint, atomically: false, encoding: .utf8)
            let refused = await #expect(throws: OperationError.self) {
                _ = try await withService(world) { service -> Int in _ = try service.record([AuditEntry(event: "test.after")]); return 0 }
            }
            #expect(refused?.code == .auditInconsistent && refused?.reason.contains("ahead") == true, "\(String(describing: refused))")
        }
    }

    /// A torn line inside the sealed records is damage, not an interrupted append: the repair
    /// refuses to cut it, and the log is left as it is.
    @Test func repairNeverCutsASealedRecord() async throws {
        try await UseCaseWorld.with("audit-repair") { world in
            try await sealedTwice(world)
            let log = try world.auditLogPath
            var bytes = try Data(contentsOf: URL(fileURLWithPath: log))
            bytes.removeLast()
            try bytes.write(to: URL(fileURLWithPath: log))
            let target = world.target()
            let audit = world.audit
            await #expect(throws: AuditError(.inconsistent, "")) {
                _ = try await BlockingBridge.run { try AuditOperations.repairTornTail(target: target, directory: audit, observer: SilentObserver()) }
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: log)) == bytes, "the log was changed")
        }
    }

    /// After an edit, a person re-anchors: the trail records what it cannot prove, and appends
    /// and verification work again from the log as it is.
    @Test func aPersonReanchorsAnEditedTrailAndItIsRecorded() async throws {
        try await UseCaseWorld.with("audit-reanchor") { world in
            try await sealedTwice(world)
            let log = try world.auditLogPath
            let edited = try String(contentsOfFile: log, encoding: .utf8).replacingOccurrences(of: "test.a", with: "test.z")
            try edited.write(toFile: log, atomically: false, encoding: .utf8)
            await #expect(throws: (any Error).self) { _ = try await verify(world) }
            let target = world.target()
            let audit = world.audit
            let reanchored = try await BlockingBridge.run {
                try AuditOperations.reanchor(target: target, directory: audit, reason: "ticket 42", observer: SilentObserver())
            }
            #expect(reanchored.previousAnchor == "not-extended", "\(reanchored)")
            #expect(try world.auditEvents().last == "audit.reanchored")
            let verified = try await verify(world)
            #expect(verified.records == (try world.auditRecords()).count)
        }
    }

}
