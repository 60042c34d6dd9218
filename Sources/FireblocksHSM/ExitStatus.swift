import FireblocksAPI
import PKCS11
import TokenKeys

/// The process exit codes, one per class of failure, stable for scripts (docs/exit-codes.md).
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    /// A bug or an unexpected condition.
    case internalError = 1
    /// Bad flags, arguments, URIs, subject fields or PIN sources.
    case usage = 2
    /// An input file could not be read or an output file written.
    case fileError = 3
    /// The module could not be loaded, the token was not found or is ambiguous, lacks a
    /// mechanism, or a PKCS#11 call failed.
    case token = 4
    /// No PIN, wrong PIN, locked PIN.
    case pin = 5
    /// The key was not found, is ambiguous, or the label/id is taken.
    case key = 6
    /// The key fails the key policy (or the token did not honour it when generating).
    case keyPolicy = 7
    /// The API refused the credentials or their permissions (HTTP 401, 403).
    case apiAuthentication = 8
    /// The API refused the request (other 4xx), or the local idempotency record forbade sending it.
    case apiRequest = 9
    /// The API failed (5xx, 429 after retries) or could not be reached (network, timeout).
    case apiUnavailable = 10

    /// The class of an error and the one line to print for it.
    public static func classify(_ error: any Error) -> (status: ExitStatus, message: String) {
        switch error {
        case let error as TokenKeysError:
            return (status(for: error.code), error.reason)
        case let error as TokenOperationError:
            return (pinReturnValues.contains(error.underlying.returnValue) ? .pin : .token, error.description)
        case let error as PKCS11Error:
            return (pinReturnValues.contains(error.returnValue) ? .pin : .token, "token operation failed: \(error)")
        case let error as ModuleLoadError:
            return (.token, error.description)
        case let error as PKCS11URIError:
            return (.usage, error.description)
        case let error as FileOutputError:
            return (.fileError, error.description)
        case let error as InvalidArgumentError:
            return (.usage, error.description)
        case let error as FireblocksAPIError:
            if error.isAuthenticationFailure { return (.apiAuthentication, error.description) }
            return (error.isServerSide ? .apiUnavailable : .apiRequest, error.description)
        case let error as APIClientError:
            switch error.code {
            case .badBaseURL, .insecureBaseURL, .badPath, .noEnvironment, .badInput:
                return (.usage, error.reason)
            case .idempotencyConflict:
                return (.apiRequest, error.reason)
            case .network, .timeout, .invalidResponse:
                return (.apiUnavailable, error.reason)
            }
        default:
            return (.internalError, "unexpected error: \(error)")
        }
    }

    private static let pinReturnValues: Set<ReturnValue> = [.pinIncorrect, .pinLocked, .pinInvalid, .pinLenRange, .pinExpired]

    private static func status(for code: TokenKeysError.Code) -> ExitStatus {
        switch code {
        case .noTokenSelected, .conflictingModule, .pinValueOnCommandLine, .invalidArgument, .invalidSubject, .notExportable:
            return .usage
        case .noTokenMatches, .ambiguousToken, .mechanismUnsupported, .keySizeUnsupported, .copyUnsupported, .signatureCheckFailed:
            return .token
        case .pinUnavailable, .pinIncorrect, .pinLocked, .pinRejected:
            return .pin
        case .keyNotFound, .ambiguousKey, .keyExists:
            return .key
        case .policyViolation, .notAnRSAKey:
            return .keyPolicy
        }
    }
}
