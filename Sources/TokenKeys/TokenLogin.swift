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
            let label = info.label
            if info.flags.contains(.userPINLocked) {
                throw TokenKeysError(.pinLocked, "the user PIN of token '\(label)' is locked (CKF_USER_PIN_LOCKED); the security officer must reset it")
            }
            if !info.flags.contains(.userPINInitialized) {
                throw TokenKeysError(.pinRejected, "token '\(label)' has no user PIN yet (CKF_USER_PIN_INITIALIZED is off); initialise it first")
            }
            if info.flags.contains(.userPINFinalTry) {
                warn("warning: token '\(label)' reports CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it")
            } else if info.flags.contains(.userPINCountLow) {
                warn("warning: token '\(label)' reports CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered recently")
            }

            let pin: PIN
            if info.flags.contains(.protectedAuthenticationPath) {
                warn("enter the PIN of token '\(label)' on the device's PIN pad")
                pin = PIN(bytes: [])
            } else {
                pin = try source.readPIN(prompter: prompter, promptText: "User PIN for token '\(label)': ", warn: warn)
            }

            do {
                try session.login(.user, pin: pin)
                return
            } catch let error as PKCS11Error {
                switch error.returnValue {
                case .pinIncorrect:
                    if source.mayRetry, attempt < promptAttempts,
                       !(try session.slot.tokenInfo().flags.contains(.userPINLocked)) {
                        warn("wrong PIN (\(error)); try again")
                        continue
                    }
                    let origin = source.mayRetry ? "after \(attempt) attempts" : "from \(source); not retried"
                    throw TokenKeysError(.pinIncorrect, "wrong user PIN for token '\(label)' (\(error); PIN \(origin))")
                case .pinLocked:
                    throw TokenKeysError(.pinLocked, "the user PIN of token '\(label)' is locked (\(error)); the security officer must reset it")
                case .pinLenRange, .pinInvalid, .pinExpired:
                    throw TokenKeysError(.pinRejected, "token '\(label)' rejected the PIN (\(error))")
                default:
                    throw error
                }
            }
        }
    }
}
