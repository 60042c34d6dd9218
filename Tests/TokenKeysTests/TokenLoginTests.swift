import Foundation
import PKCS11
import SoftHSMTestSupport
import Synchronization
import Testing
import TokenKeys

@Suite("Login")
struct TokenLoginTests {
    private func token(_ flags: TokenFlags) -> TokenInfo {
        TokenInfo(label: "fb", manufacturer: "m", model: "x", serialNumber: "1",
                  flags: flags.union([.tokenInitialized, .loginRequired]))
    }

    @Test func aLockedPINIsRefusedWithoutTrying() {
        #expect(throws: TokenKeysError(.pinLocked, "")) { try TokenLogin.precheck(token([.userPINInitialized, .userPINLocked])) }
    }

    @Test func warnsBeforeTheFinalTryAndWhenTheCountIsLow() throws {
        let finalTry = try TokenLogin.precheck(token([.userPINInitialized, .userPINFinalTry, .userPINCountLow]))
        #expect(finalTry.count == 1)
        #expect(finalTry[0].contains("CKF_USER_PIN_FINAL_TRY"))
        let low = try TokenLogin.precheck(token([.userPINInitialized, .userPINCountLow]))
        #expect(low.count == 1)
        #expect(low[0].contains("CKF_USER_PIN_COUNT_LOW"))
        #expect(try TokenLogin.precheck(token([.userPINInitialized])).isEmpty)
    }

    @Test func aTokenWithoutUserPINIsRefused() {
        #expect(throws: TokenKeysError(.pinRejected, "")) { try TokenLogin.precheck(token([])) }
    }

    @Test func aPINFromAFileOrTheEnvironmentIsNeverRetried() {
        let wrong = PKCS11Error(function: "C_Login", returnValue: .pinIncorrect)
        for source in [PINSource.environment("HSM_PIN"), .file("/run/pin")] {
            let action = TokenLogin.afterFailure(wrong, source: source, attempt: 1, token: token([.userPINInitialized]))
            guard case .fail(let error as TokenKeysError) = action else {
                Issue.record("\(source) was retried")
                continue
            }
            #expect(error.code == .pinIncorrect)
            #expect(error.reason.contains("not retried"))
            #expect(error.reason.contains("CKR_PIN_INCORRECT"))
        }
    }

    @Test func aPromptIsAskedAgainAFewTimes() {
        let wrong = PKCS11Error(function: "C_Login", returnValue: .pinIncorrect)
        let state = token([.userPINInitialized, .userPINCountLow])
        if case .fail = TokenLogin.afterFailure(wrong, source: .prompt, attempt: 1, token: state) {
            Issue.record("a prompt should be retried")
        }
        if case .retry = TokenLogin.afterFailure(wrong, source: .prompt, attempt: TokenLogin.promptAttempts, token: state) {
            Issue.record("retried past the limit")
        }
    }

    @Test func aPromptIsNotAskedAgainOnceThePINIsLocked() {
        let wrong = PKCS11Error(function: "C_Login", returnValue: .pinIncorrect)
        let action = TokenLogin.afterFailure(wrong, source: .prompt, attempt: 1, token: token([.userPINInitialized, .userPINLocked]))
        guard case .fail(let error as TokenKeysError) = action else {
            Issue.record("retried a locked PIN")
            return
        }
        #expect(error.code == .pinLocked)
    }

    @Test func pinLockedFromTheTokenIsReportedAsSuch() {
        let locked = PKCS11Error(function: "C_Login", returnValue: .pinLocked)
        guard case .fail(let error as TokenKeysError) = TokenLogin.afterFailure(locked, source: .prompt, attempt: 1, token: token([.userPINInitialized])) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .pinLocked)
    }

    @Test func aWrongPINFromTheEnvironmentFailsOnARealToken() throws {
        let token = try TestToken(labelPrefix: "login")
        let session = try token.slot.openSession(readWrite: false)
        let name = "FBHSM_WRONG_PIN_\(UInt32.random(in: 0...UInt32.max))"
        setenv(name, "not-the-pin", 1)
        defer { unsetenv(name) }
        var warnings: [String] = []
        #expect(throws: TokenKeysError(.pinIncorrect, "")) {
            try TokenLogin.logIn(session, source: .environment(name), prompter: nil, warn: { warnings.append($0) })
        }
        #expect(try !session.state().isUserLoggedIn)
        // SoftHSM now reports the count low; the next login warns first, then succeeds.
        setenv(name, token.userPINString, 1)
        try TokenLogin.logIn(session, source: .environment(name), prompter: nil, warn: { warnings.append($0) })
        #expect(try session.state().isUserLoggedIn)
        #expect(warnings.contains { $0.contains("CKF_USER_PIN_COUNT_LOW") })
    }

    @Test func aPromptGetsThreeTries() throws {
        let token = try TestToken(labelPrefix: "prompt")
        let session = try token.slot.openSession(readWrite: false)
        let prompter = ScriptedPrompter(["wrong-1", "wrong-2", token.userPINString])
        var warnings: [String] = []
        try TokenLogin.logIn(session, source: .prompt, prompter: prompter, warn: { warnings.append($0) })
        #expect(prompter.asked == 3)
        #expect(warnings.filter { $0.hasPrefix("wrong PIN") }.count == 2)
        #expect(try session.state().isUserLoggedIn)
    }

    @Test func aPromptGivesUpAfterThreeWrongPINs() throws {
        let token = try TestToken(labelPrefix: "prompt3")
        let session = try token.slot.openSession(readWrite: false)
        let prompter = ScriptedPrompter(["wrong-1", "wrong-2", "wrong-3", token.userPINString])
        #expect(throws: TokenKeysError(.pinIncorrect, "")) {
            try TokenLogin.logIn(session, source: .prompt, prompter: prompter, warn: { _ in })
        }
        #expect(prompter.asked == 3)
    }
}

/// Answers PIN prompts from a list, counting them.
final class ScriptedPrompter: PINPrompter, Sendable {
    private let script: Mutex<(answers: [String], asked: Int)>
    var asked: Int { script.withLock { $0.asked } }

    init(_ answers: [String]) { script = Mutex((answers, 0)) }

    func readPIN(prompt: String) throws(TokenKeysError) -> PIN {
        let answer = script.withLock { script -> String? in
            script.asked += 1
            return script.answers.isEmpty ? nil : script.answers.removeFirst()
        }
        guard let answer else { throw TokenKeysError(.pinUnavailable, "no more answers") }
        return PIN(answer)
    }
}
