import Foundation
import PKCS11
import SoftHSMTestSupport
import Synchronization
import Testing

/// The wrapper's two `@unchecked Sendable` types, exercised under the concurrency their
/// invariants allow: `LoadedModule` (its function list is written once, before publication,
/// and the module is initialised with `CKF_OS_LOCKING_OK`, so any thread may call it) and the
/// PIN's storage (its bytes are never written after they are made, and wiped only when no
/// copy is left).
@Suite("PKCS#11: what is shared between threads")
struct SendableInvariantTests {
    /// Threads that load the same module at once share one initialisation and each use it
    /// through sessions of their own; every call answers as on one thread.
    @Test func oneModuleLoadedAndCalledFromManyThreadsAtOnce() async throws {
        let token = try TestToken(labelPrefix: "threads")
        let pin = token.userPIN
        let threads = 8
        let outcomes = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: threads) { index in
            do {
                let module = try PKCS11Module.load(.path(SoftHSM.modulePath))
                guard let slot = try module.slots().first(where: { try $0.tokenInfo().label == token.label }) else {
                    outcomes.withLock { $0.append("thread \(index): token not found") }
                    return
                }
                let session = try slot.openSession(readWrite: false)
                try? session.login(.user, pin: pin)  // one login serves every session of the process
                for _ in 0..<50 {
                    _ = try slot.tokenInfo()
                    guard try session.state().isUserLoggedIn else { throw PKCS11Error(function: "C_GetSessionInfo", returnValue: .userNotLoggedIn) }
                    _ = try session.findObjects([])
                }
                try session.close()
                outcomes.withLock { $0.append("ok") }
            } catch {
                outcomes.withLock { $0.append("thread \(index): \(error)") }
            }
        }
        #expect(outcomes.withLock { $0 } == Array(repeating: "ok", count: threads))
    }

    /// Copies of one PIN read and compared on many threads while other copies are dropped: the
    /// bytes stay what they were until the last copy goes.
    @Test func copiesOfAPINAreReadOnManyThreadsWhileOthersAreDropped() {
        let original = PIN("correct horse battery staple")
        let wrong = PIN("correct horse battery stapler")
        let mismatches = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            for _ in 0..<200 {
                var copies: [PIN] = [original, original]
                let text = copies[0].withBytes { String(decoding: $0, as: UTF8.self) }
                if text != "correct horse battery staple" || !copies[1].isEqual(to: original) || copies[1].isEqual(to: wrong) {
                    mismatches.add(1, ordering: .relaxed)
                }
                copies.removeAll()
            }
        }
        #expect(mismatches.load(ordering: .relaxed) == 0)
        #expect(original.withBytes { $0.count } == 28)
    }
}
