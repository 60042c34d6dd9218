import APITestSupport
import AuditTrail
import FireblocksHSM
import Foundation
import SoftHSMTestSupport
import Testing
import TokenKeys

/// An operation does not start while the audit directory's filesystem has less free than the
/// threshold: refused before the token changes and before any record, with the free space, the
/// threshold and the directory in the error; started again once there is room.
@Suite("Audit trail: free space on its disk (use cases)")
struct AuditDiskUseCaseTests {
    @Test func anAuditServiceRefusesUnderItsThresholdAndSaysWhatIsFreeAndWhere() async throws {
        try await UseCaseWorld.with("disk-service") { world in
            let target = world.target()
            let audit = world.audit
            try FileManager.default.createDirectory(at: audit, withIntermediateDirectories: true)
            let (refusal, atZero) = try await BlockingBridge.run { () -> (OperationError?, Bool) in
                let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: SilentObserver(), auditDirectory: audit)
                let service = AuditService(opened: opened, directory: audit, observer: SilentObserver())
                #expect(service.minimumFreeSpace == .standard, "the process's threshold, which no test changes")
                // More than any filesystem in use has free.
                service.minimumFreeSpace = .percent(100)
                var refusal: OperationError?
                do { try service.requireFreeSpace() } catch let error as OperationError { refusal = error }
                service.minimumFreeSpace = .bytes(0)
                let atZero = (try? service.requireFreeSpace()) != nil
                return (refusal, atZero)
            }
            let error = try #require(refusal)
            #expect(error.code == .auditDiskLow)
            #expect(error.facts.path == audit.path)
            #expect(error.reason.contains(audit.path) && error.reason.contains("free") && error.reason.contains("100 % of the filesystem"), "\(error.reason)")
            #expect(atZero, "0 turns the check off")
            let logPath = try world.auditLogPath
            #expect(!FileManager.default.fileExists(atPath: logPath), "nothing was recorded")
        }
    }

    @Test(.enabled(if: SmallFilesystem.isAvailable))
    func keyGenerationOnAFullAuditDiskMakesNoKeyAndNoRecordAndWorksOnceThereIsRoom() async throws {
        try await UseCaseWorld.with("disk-full") { world in
            // The audit directory is a 4 MiB tmpfs: the standard threshold keeps 5 % of it free.
            let disk = try SmallFilesystem(at: world.audit.path, bytes: 4 << 20)
            defer { disk.unmount() }
            let target = world.target(key: "k")
            let (state, audit) = (world.state, world.audit)
            let generate: @Sendable () throws -> KeyReport = {
                try KeyOperations.generate(target: target, bits: 2048, id: nil, stateDirectory: state, lockTimeout: 5,
                                           auditDirectory: audit, observer: SilentObserver())
            }
            // A first key makes the trail (the audit key and its records).
            let first = world.target(key: "first")
            _ = try await BlockingBridge.run {
                try KeyOperations.generate(target: first, bits: 2048, id: nil, stateDirectory: state, lockTimeout: 5,
                                           auditDirectory: audit, observer: SilentObserver())
            }
            let before = try world.auditEvents()
            try disk.fill(leaving: 64 << 10)
            await #expect(throws: OperationError(.auditDiskLow, "")) { try await BlockingBridge.run(generate) }
            #expect(try world.auditEvents() == before, "no record, not even command.failed")
            let keys = try await BlockingBridge.run { try KeyOperations.list(target: target, observer: SilentObserver()).map(\.label) }
            #expect(!keys.contains("k"), "\(keys)")

            try disk.empty()
            #expect(try await BlockingBridge.run(generate).meetsPolicy)
            #expect(try world.auditEvents().last == "key.generated")
        }
    }
}
