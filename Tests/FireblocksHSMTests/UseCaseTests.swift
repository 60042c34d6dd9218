import AuditTrail
import DurableFiles
import APITestSupport
import AsyncHTTPTransport
import FireblocksAPI
import FireblocksHSM
import FireblocksSandbox
import Foundation
import PKCS11
import SoftHSMTestSupport
import Synchronization
import Testing
import TokenKeys

/// When something happened, once marked (from any thread).
final class Moment: Sendable {
    private let marked = Mutex<ContinuousClock.Instant?>(nil)
    var instant: ContinuousClock.Instant? { marked.withLock { $0 } }
    func mark() { marked.withLock { $0 = .now } }
}

/// Collects what a use case reports, as a test's observer.
final class RecordingObserver: OperationObserver {
    private let recorded = Mutex<[String]>([])
    var notes: [String] { recorded.withLock { $0 } }
    func note(_ message: String) { recorded.withLock { $0.append(message) } }
    func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R {
        recorded.withLock { $0.append("slow: " + description) }
        return try work()
    }
    var pinPrompter: (any PINPrompter)? { nil }
}

/// The use cases called as a Swift service would: no terminal, an observer, resolved targets.
@Suite("Use cases (FireblocksHSM)")
struct UseCaseTests {
    private func target(_ token: TestToken, key: String?) -> TokenTarget {
        let variable = "USECASE_PIN_" + String(UInt32.random(in: 0 ... .max), radix: 16).uppercased()
        setenv(variable, token.userPINString, 1)
        return TokenTarget(module: .path(SoftHSM.modulePath), token: .label(token.label),
                           key: key.map { .label($0) }, pinSource: .environment(variable))
    }

    private func stateDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("usecase-state-\(UUID())")
    }

    @Test func keyGenerationReportsItsSlowStepAndRefusesATakenLabelFirst() throws {
        let token = try TestToken(labelPrefix: "uc-keygen")
        let state = stateDirectory()
        defer { try? FileManager.default.removeItem(at: state) }
        let observer = RecordingObserver()
        let report = try KeyOperations.generate(target: target(token, key: "k"), bits: 2048, id: nil, stateDirectory: state,
                                                lockTimeout: 5, auditDirectory: state.appendingPathComponent("audit"), observer: observer)
        #expect(report.meetsPolicy)
        #expect(observer.notes.contains { $0.hasPrefix("slow: Generating RSA-2048") })

        let again = RecordingObserver()
        #expect(throws: TokenKeysError(.keyExists, "")) {
            try KeyOperations.generate(target: target(token, key: "k"), bits: 2048, id: nil, stateDirectory: state,
                                       lockTimeout: 5, auditDirectory: state.appendingPathComponent("audit"), observer: again)
        }
        #expect(again.notes.isEmpty, "nothing is announced before the label is checked")
    }

    /// Onboardings that wait for the audit log's lock (held here by another "process" for 12 s)
    /// wait off the cooperative pool: more of them than there are cores, and other async work
    /// still runs at once. Blocking the pool's threads would hold this test's own probe too.
    @Test func onboardingsWaitingForALockLeaveTheCooperativePoolFree() async throws {
        let token = try TestToken(labelPrefix: "uc-pool")
        let state = stateDirectory()
        defer { try? FileManager.default.removeItem(at: state) }
        let audit = state.appendingPathComponent("audit")
        _ = try await BlockingBridge.run { [self] in
            try KeyOperations.generate(target: target(token, key: "first"), bits: 2048, id: nil, stateDirectory: state,
                                       lockTimeout: 5, auditDirectory: audit, observer: RecordingObserver())
        }
        let info = try token.slot.tokenInfo()
        let lockPath = AuditLog(directory: audit, token: .init(serial: info.serialNumber, label: info.label),
                                tool: .init(name: "fireblocks-hsm", version: "test")).lockPath
        let holding = DispatchSemaphore(value: 0)
        let releasedAt = Moment()
        DispatchQueue.global().async {
            guard let lock = try? FileLock.acquire(lockPath, timeout: 5) else { holding.signal(); return }
            holding.signal()
            // Holding the lock for 12 s is the condition under test (the onboardings wait that long).
            sleep(12)
            releasedAt.mark()
            lock.release()
        }
        await withCheckedContinuation { continuation in DispatchQueue.global().async { holding.wait(); continuation.resume() } }

        let count = ProcessInfo.processInfo.activeProcessorCount + 2
        let tasks = (0..<count).map { index in
            let request = OnboardRequest(keyLabel: "bot\(index)", bits: 2048, subject: try! CSRSubject(commonName: "bot", organization: "Acme"),
                                         csrPath: state.path + "-bot\(index).csr", overwriteCSR: true, name: "bot\(index)", role: .SIGNER,
                                         coSignerSetupType: nil, coSignerSetupIsFirstUser: nil, submission: nil)
            let tokenTarget = target(token, key: nil)
            return Task { () async throws -> ContinuousClock.Instant in
                _ = try await Onboarding.run(token: tokenTarget, request: request, stateDirectory: state, auditDirectory: audit,
                                             observer: RecordingObserver())
                return .now
            }
        }
        // Probes of the pool all the while the lock is held: each 20 ms sleep (the measurement
        // itself) must end about on time.
        var worst = Duration.zero
        while releasedAt.instant == nil {
            let probe = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(20))
            worst = max(worst, probe.duration(to: .now))
        }
        let released = try #require(releasedAt.instant)
        for task in tasks {
            let finished = try await task.value
            #expect(finished > released, "an onboarding finished while the lock was held: the probes measured nothing")
        }
        for index in 0..<count { unlink(state.path + "-bot\(index).csr") }
        // Blocked pool threads would hold a probe until the lock is released (about 12 s); a free
        // pool runs it at once, give or take what a loaded 2-core machine adds.
        #expect(worst < .seconds(7), "a 20 ms sleep took \(worst) while onboardings waited for a lock")
    }

    @Test func aTokenSignerSignsOffTheCooperativePool() async throws {
        let token = try TestToken(labelPrefix: "uc-async")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        let signer = TokenJWTSigner(try TokenSigner(key: try UsableKey(pair, slot: token.slot)))
        let message = Array("a.b".utf8)
        let signature = try await signer.signRS256(message)
        #expect(try #require(pair.publicKey).isValidRS256Signature(signature, for: message))
        _ = session
    }

    @Test func thePoolSignersBlockingFormSignsFromAThreadOfItsOwn() async throws {
        let token = try TestToken(labelPrefix: "uc-poolsync")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        let pinFile = FileManager.default.temporaryDirectory.appendingPathComponent("uc-pin-\(UUID().uuidString)").path
        try token.userPINString.write(toFile: pinFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: pinFile) }
        let signer = PoolJWTSigner(try SigningPool(key: try UsableKey(pair, slot: token.slot), pinSource: .file(pinFile), size: 1))
        let message = Array("a.b".utf8)
        // The blocking form is for synchronous callers on threads of their own, never a task.
        let signature = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
            Thread { continuation.resume(with: Result { try signer.signRS256(message) }) }.start()
        }
        #expect(try #require(pair.publicKey).isValidRS256Signature(signature, for: message))
        _ = session
    }
}
