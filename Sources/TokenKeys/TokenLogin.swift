import ErrorShape
import PKCS11

/// Logs the user in, aware of the token's PIN state.
public enum TokenLogin {
    /// How many PINs a person may type at a prompt before the command gives up (each wrong
    /// one costs a try of the token's retry counter).
    public static let promptAttempts = 3

    /// Logs the user in on `session`'s token unless this process already is.
    ///
    /// Warns before trying when the token reports the PIN count low or a final try, refuses a
    /// locked PIN without trying, and never re-sends a PIN that came from a file, the
    /// environment or a URI.
    public static func logIn(
        _ session: Session,
        source: PINSource,
        prompter: (any PINPrompter)?,
        warn: (String) -> Void
    ) throws {
        if try session.state().isUserLoggedIn { return }
        var attempt = 0
        while true {
            attempt += 1
            let info = try session.slot.tokenInfo()
            try precheck(info).forEach(warn)

            do {
                if info.flags.contains(.protectedAuthenticationPath) {
                    warn("enter the PIN of token '\(info.label)' on the device's PIN pad")
                    try session.loginOnProtectedAuthenticationPath(.user)
                } else {
                    let pin = try source.readPIN(prompter: prompter, promptText: "User PIN for token '\(info.label)': ", warn: warn)
                    try session.login(.user, pin: pin)
                }
                return
            } catch let error as PKCS11Error {
                let after = try? session.slot.tokenInfo()
                switch afterFailure(error, source: source, attempt: attempt, token: after ?? info) {
                case .retry(let message):
                    warn(message)
                case .fail(let failure):
                    throw failure
                }
            }
        }
    }

    /// What the token's flags say before a PIN is asked for: the warnings to show, or the
    /// error that makes asking pointless.
    public static func precheck(_ token: TokenInfo) throws(TokenKeysError) -> [String] {
        let label = token.label
        if token.flags.contains(.userPINLocked) {
            throw TokenKeysError(.pinLocked, "the user PIN of token '\(label)' is locked (CKF_USER_PIN_LOCKED); the security officer must reset it", facts: ErrorFacts(tokenLabel: label))
        }
        if !token.flags.contains(.userPINInitialized) {
            throw TokenKeysError(.pinRejected, "token '\(label)' has no user PIN yet (CKF_USER_PIN_INITIALIZED is off); initialise it first")
        }
        if token.flags.contains(.userPINFinalTry) {
            return ["warning: token '\(label)' reports CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it"]
        }
        if token.flags.contains(.userPINCountLow) {
            return ["warning: token '\(label)' reports CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered recently"]
        }
        return []
    }

    /// What to do after `C_Login` failed.
    public enum FailureAction: Equatable {
        /// Ask the person again, after showing this.
        case retry(String)
        case fail(Error)

        /// Equal by value.
        public static func == (lhs: Self, rhs: Self) -> Bool {
            switch (lhs, rhs) {
            case (.retry(let left), .retry(let right)): return left == right
            case (.fail(let left), .fail(let right)): return "\(left)" == "\(right)"
            default: return false
            }
        }
    }

    /// Decides on a failed `C_Login`: only a prompt is asked again, at most
    /// ``promptAttempts`` times and never once the token reports the PIN locked.
    /// - Parameter token: the token's state after the failure.
    public static func afterFailure(_ error: PKCS11Error, source: PINSource, attempt: Int, token: TokenInfo) -> FailureAction {
        let label = token.label
        switch error.returnValue {
        case .pinIncorrect:
            if token.flags.contains(.userPINLocked) {
                return .fail(TokenKeysError(.pinLocked, "wrong user PIN for token '\(label)' (\(error)), and the token now reports the PIN locked; the security officer must reset it", facts: ErrorFacts(tokenLabel: label)))
            }
            if source.mayRetry, attempt < promptAttempts {
                return .retry("wrong PIN (\(error)); try again")
            }
            let origin = source.mayRetry ? "after \(attempt) attempts" : "from \(source); not retried"
            return .fail(TokenKeysError(.pinIncorrect, "wrong user PIN for token '\(label)' (\(error); PIN \(origin))", facts: ErrorFacts(tokenLabel: label)))
        case .pinLocked:
            return .fail(TokenKeysError(.pinLocked, "the user PIN of token '\(label)' is locked (\(error)); the security officer must reset it", facts: ErrorFacts(tokenLabel: label)))
        case .pinLenRange, .pinInvalid, .pinExpired:
            return .fail(TokenKeysError(.pinRejected, "token '\(label)' rejected the PIN (\(error))"))
        default:
            return .fail(error)
        }
    }
}
