import Crypto
import _CryptoExtras
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys

/// The session pool under load and under the failures a long-running signer meets: sessions
/// closed underneath, a logout, a PIN changed behind its back.
@Suite("Signing pool")
struct SigningPoolTests {
    /// A token with one RSA key, logged in, and a 0600 PIN file the pool re-reads.
    private struct Fixture {
        let token: TestToken
        let session: Session
        let key: UsableKey
        let publicKey: _RSA.Signing.PublicKey
        let pinFile: String

        init(_ prefix: String) throws {
            token = try TestToken(labelPrefix: prefix)
            session = try token.userSession()
            let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "bot", bits: 2048), in: session)
            key = try UsableKey(pair, slot: token.slot)
            publicKey = try _RSA.Signing.PublicKey(derRepresentation: try #require(pair.publicKey).subjectPublicKeyInfoDER)
            pinFile = FileManager.default.temporaryDirectory.appendingPathComponent("pool-pin-\(UUID().uuidString)").path
            try token.userPINString.write(toFile: pinFile, atomically: true, encoding: .utf8)
            chmod(pinFile, 0o600)
        }

        func verifies(_ signature: [UInt8], _ message: [UInt8]) -> Bool { verifier(signature, message) }

        /// The check, for tasks (the fixture's session stays with the test).
        var verifier: @Sendable ([UInt8], [UInt8]) -> Bool {
            let publicKey = publicKey
            return { signature, message in
                publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature),
                                           for: SHA256.hash(data: message), padding: .insecurePKCS1v1_5)
            }
        }

        func remove() { try? FileManager.default.removeItem(atPath: pinFile) }
    }

    @Test func eightSignersAtOnceOnTwoSessionsAllVerify() async throws {
        let fixture = try Fixture("pool-load")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .file(fixture.pinFile), size: 2)
        let verifies = fixture.verifier
        // A count, not a duration: under a loaded machine the test must not depend on speed.
        let rounds = 12
        let results = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var good = 0, bad = 0
                    for round in 0..<rounds {
                        let message = Array("worker \(worker) round \(round)".utf8)
                        let signature = try await pool.signRS256(message)
                        if verifies(signature, message) { good += 1 } else { bad += 1 }
                    }
                    return (good, bad)
                }
            }
            var totals = (good: 0, bad: 0)
            for try await (good, bad) in group { totals.good += good; totals.bad += bad }
            return totals
        }
        #expect(results.bad == 0)
        #expect(results.good == 8 * rounds)
        let statistics = pool.statistics
        #expect(statistics.open <= 2)
        #expect(statistics.waits > 0, "eight signers on two sessions must have waited")
        #expect(statistics.signatures == results.good)
        #expect(statistics.failures == 0)
    }

    @Test func sessionsClosedUnderneathAreReopenedAndTheSignatureRetried() async throws {
        let fixture = try Fixture("pool-closed")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .file(fixture.pinFile), size: 2)
        _ = try await pool.signRS256([1])
        // Every session of this process on the token: gone (and, with the last, the login).
        try fixture.token.slot.closeAllSessions()
        let message = Array("after the close".utf8)
        let signature = try await pool.signRS256(message)
        #expect(fixture.verifies(signature, message))
        let statistics = pool.statistics
        #expect(statistics.reopenedSessions == 1)
        #expect(statistics.relogins == 1)
        #expect(statistics.failures == 0)
    }

    @Test func aLogoutUnderneathCostsOneLoginForAllSigners() async throws {
        let fixture = try Fixture("pool-logout")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .file(fixture.pinFile), size: 4)
        _ = try await pool.signRS256([1])
        try fixture.session.logout()
        let verifies = fixture.verifier
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<6 {
                group.addTask {
                    let message = Array("signer \(index)".utf8)
                    let signature = try await pool.signRS256(message)
                    #expect(verifies(signature, message))
                }
            }
            try await group.waitForAll()
        }
        #expect(pool.statistics.relogins == 1)
        #expect(pool.statistics.loginAttempts == 1)
    }

    @Test func signersWaitingForASessionStopWhenTheirTaskIsCancelled() async throws {
        let fixture = try Fixture("pool-cancel")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .file(fixture.pinFile), size: 1)
        _ = try await pool.signRS256([1])
        let verifies = fixture.verifier
        // Forty signers on one session: cancelled once the first signature is back, the ones
        // still waiting stop at once; those already signing finish and verify.
        let first = AsyncStream<Void>.makeStream()
        let outcomes = await withTaskGroup(of: String.self) { group -> [String] in
            for index in 0..<40 {
                group.addTask {
                    do {
                        let message = Array("signer \(index)".utf8)
                        let signature = try await pool.signRS256(message)
                        first.continuation.yield()
                        return verifies(signature, message) ? "signed" : "bad signature"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            for await _ in first.stream { break }
            group.cancelAll()
            var outcomes: [String] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(outcomes.filter { $0 != "signed" && $0 != "cancelled" }.isEmpty, "\(outcomes)")
        #expect(outcomes.contains("cancelled"), "no waiting signer stopped: \(outcomes)")
        // The pool lost nothing: its one session signs again, no waiter is left behind.
        let message = Array("after the cancellation".utf8)
        #expect(fixture.verifies(try await pool.signRS256(message), message))
        #expect(pool.statistics.open == 1)
        #expect(pool.statistics.failures == 0)
    }

    @Test func aWrongPINOnReloginFailsOnceAndIsNeverSentAgain() async throws {
        let fixture = try Fixture("pool-wrongpin")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .file(fixture.pinFile), size: 2)
        _ = try await pool.signRS256([1])
        try "not-the-pin-9137".write(toFile: fixture.pinFile, atomically: true, encoding: .utf8)
        try fixture.session.logout()
        await #expect(throws: TokenKeysError(.pinIncorrect, "")) { try await pool.signRS256([2]) }
        // The PIN is right again, but the pool does not try: one wrong PIN was enough.
        try fixture.token.userPINString.write(toFile: fixture.pinFile, atomically: true, encoding: .utf8)
        for _ in 0..<3 {
            do {
                _ = try await pool.signRS256([3])
                Issue.record("a refused login must not be retried")
            } catch let error as TokenKeysError {
                #expect(error.code == .pinIncorrect)
                #expect(!error.reason.contains("not-the-pin") && !error.reason.contains(fixture.token.userPINString))
            }
        }
        #expect(pool.statistics.loginAttempts == 1)
        #expect(pool.statistics.failures == 4)
    }

    @Test func aPromptedPINIsNotAskedAgainWhenTheLoginIsLost() async throws {
        let fixture = try Fixture("pool-prompt")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .prompt, size: 1)
        _ = try await pool.signRS256([1])
        try fixture.session.logout()
        await #expect(throws: TokenKeysError(.pinUnavailable, "")) { try await pool.signRS256([2]) }
        #expect(pool.statistics.loginAttempts == 0)
    }

    @Test func thePoolIsBoundedByItsSizeAndTheTokensSessionLimit() throws {
        let fixture = try Fixture("pool-size")
        defer { fixture.remove() }
        #expect(throws: TokenKeysError(.invalidArgument, "")) { try SigningPool(key: fixture.key, pinSource: .prompt, size: 0) }
        let pool = try SigningPool(key: fixture.key, pinSource: .prompt)
        #expect(pool.size == ProcessInfo.processInfo.activeProcessorCount)
        #expect(pool.statistics.open == 1)
    }

    @Test func aClosedPoolRefusesToSign() async throws {
        let fixture = try Fixture("pool-close")
        defer { fixture.remove() }
        let pool = try SigningPool(key: fixture.key, pinSource: .prompt, size: 1)
        pool.close()
        await #expect(throws: TokenKeysError(.invalidArgument, "")) { try await pool.signRS256([1]) }
        #expect(pool.statistics.open == 0)
    }
}
