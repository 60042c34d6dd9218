import FireblocksHSM
import AuditTrail
import TransparencyLog
import DurableFiles
import FireblocksAPI
import PKCS11
import TokenKeys
import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The process exit codes, one per class of failure, stable for scripts (docs/exit-codes.md).
enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    /// A bug or an unexpected condition.
    case internalError = 1
    /// Bad flags, arguments, URIs, subject fields or PIN sources.
    case usage = 2
    /// I/O: an input file could not be read, an output file or the tool's own state (records,
    /// locks) could not be written (disk full, permissions), or another run holds the lock.
    case fileError = 3
    /// The module could not be loaded, the token was not found or is ambiguous, lacks a
    /// mechanism, or a PKCS#11 call failed.
    case token = 4
    /// No PIN, wrong PIN, locked PIN.
    case pin = 5
    /// The key was not found, is ambiguous, the label/id is taken, or the run's intent differs
    /// from the recorded one.
    case key = 6
    /// The key fails the key policy (or the token did not honour it when generating).
    case keyPolicy = 7
    /// The API refused the credentials or their permissions (HTTP 401, 403).
    case apiAuthentication = 8
    /// The API refused the request (other 4xx), or the local idempotency record forbade sending it.
    case apiRequest = 9
    /// The API failed (5xx, 429 after retries) or could not be reached (network, timeout).
    case apiUnavailable = 10
    /// The audit log is damaged or inconsistent with a checkpoint (or a torn tail blocks it).
    case auditIntegrity = 11
    /// A wait ended before the API user reached the status.
    case waitTimeout = 12
    /// The policy denies the request (`policy test`, after printing the verdict).
    case policyDenied = 13

    /// The class's name in `--json` errors.
    var className: String {
        switch self {
        case .success: return "success"
        case .internalError: return "internal"
        case .usage: return "usage"
        case .fileError: return "io"
        case .token: return "token"
        case .pin: return "pin"
        case .key: return "key"
        case .keyPolicy: return "key-policy"
        case .apiAuthentication: return "api-authentication"
        case .apiRequest: return "api-request"
        case .apiUnavailable: return "api-unavailable"
        case .auditIntegrity: return "audit-integrity"
        case .waitTimeout: return "wait-timeout"
        case .policyDenied: return "policy-denied"
        }
    }

    /// The class of an error and the one line to print for it.
    static func classify(_ error: any Error) -> (status: ExitStatus, message: String) {
        let report = ErrorReport(error)
        return (report.status, report.message)
    }

    static let pinReturnValues: Set<ReturnValue> = [.pinIncorrect, .pinLocked, .pinInvalid, .pinLenRange, .pinExpired]

    static func status(for code: TokenKeysError.Code) -> ExitStatus {
        switch code {
        case .noTokenSelected, .noKeySelected, .conflictingModule, .pinValueOnCommandLine, .invalidArgument, .invalidSubject,
             .notExportable:
            return .usage
        case .noTokenMatches, .ambiguousToken, .mechanismUnsupported, .keySizeUnsupported, .copyUnsupported, .signatureCheckFailed:
            return .token
        case .pinUnavailable, .noPINSource, .pinIncorrect, .pinLocked, .pinRejected:
            return .pin
        case .keyNotFound, .ambiguousKey, .keyExists, .orphanedPublicKey, .keyInUse, .keyNotOnToken:
            return .key
        case .policyViolation, .notAnRSAKey:
            return .keyPolicy
        default:
            return .internalError
        }
    }
}

/// A failure as the command line reports it: class, exit code, one line, and the facts a
/// script may want (HTTP status, X-Request-ID, the PKCS#11 return value; for a library error
/// its code, typed facts and where it was thrown). `--json` prints it as `{"error": {...}}` on
/// stdout.
///
/// Library errors all have one shape (`LibraryError`: a code, a reason of facts, typed facts,
/// a location) and never name a flag; this is where the command line maps each to its exit
/// class and adds the advice that names the flag or command to use.
struct ErrorReport: Sendable, Encodable {
    let status: ExitStatus
    let message: String
    var requestID: String?
    var httpStatus: Int?
    var pkcs11: String?
    /// The API's answer body, when there was one (`request --json`).
    let responseBody: String?
    /// The library error's code, facts and location, when it is one.
    var code: String?
    var facts: ErrorFacts?
    var location: String?

    init(status: ExitStatus, message: String, requestID: String? = nil, httpStatus: Int? = nil,
                pkcs11: String? = nil, responseBody: String? = nil) {
        self.status = status
        self.message = message
        self.requestID = requestID
        self.httpStatus = httpStatus
        self.pkcs11 = pkcs11
        self.responseBody = responseBody
    }

    init(_ error: any Error) {
        self.init(classifying: error)
        let library = ((error as? OnboardingStopped)?.underlying as? any LibraryError) ?? (error as? any LibraryError)
        if let library {
            code = library.code.name
            let facts = library.facts
            self.facts = facts
            location = library.location.description
            requestID = requestID ?? facts.requestID
            httpStatus = httpStatus ?? facts.httpStatus
            pkcs11 = pkcs11 ?? facts.returnValue
        }
    }

    private init(classifying error: any Error) {
        switch error {
        case let error as TokenKeysError:
            self.init(status: ExitStatus.status(for: error.code),
                      message: error.reason + Self.advice(for: error.code) + Self.softHSMAdvice(reason: error.reason))
        case let error as OperationError:
            let (status, advice) = Self.classify(error.code)
            self.init(status: status, message: error.reason + advice + Self.softHSMAdvice(reason: error.reason))
        case let error as TokenOperationError:
            self.init(status: ExitStatus.pinReturnValues.contains(error.underlying.returnValue) ? .pin : .token,
                      message: error.description, pkcs11: error.underlying.returnValue.name)
        case let error as PKCS11Error:
            self.init(status: ExitStatus.pinReturnValues.contains(error.returnValue) ? .pin : .token,
                      message: "token operation failed: \(error)", pkcs11: error.returnValue.name)
        case let error as ModuleLoadError:
            self.init(status: .token, message: error.description)
        case let error as PKCS11URIError:
            var message = error.description
            if error.code == .unrecognizedAttribute, let attribute = error.attribute {
                let known = error.inQuery ? PKCS11URI.queryAttributeNames : PKCS11URI.pathAttributeNames
                let decoded = PKCS11URI.percentDecoded(attribute)
                if let nearest = Spelling.nearest(to: decoded, among: known) {
                    message += "; did you mean '\(nearest)'?"
                }
            }
            self.init(status: .usage, message: message)
        case let error as CompanionExecutableError:
            self.init(status: .fileError, message: error.description)
        case let error as FileOutputError:
            let advice: String
            switch error.code {
            case .exists: advice = "; pass --force to replace it"
            case .locked: advice = "; wait for it to finish, or pass a longer --lock-timeout"
            default: advice = ""
            }
            self.init(status: .fileError, message: error.description + advice)
        case let error as InvalidArgumentError:
            self.init(status: .usage, message: error.description)
        case let error as CommandLineError:
            self.init(status: error.status, message: error.message)
        case let error as APIUserLifecycleError:
            var message = error.reason
            switch error.code {
            case .ambiguous:
                message += ": " + error.candidates.map { "\($0.id) (\($0.role ?? "?"), \($0.status ?? "?"))" }.joined(separator: ", ")
                    + "; pass --id UUID"
                self.init(status: .usage, message: message)
            case .timeout:
                self.init(status: .waitTimeout, message: message + Self.waitAdvice(status: error.status))
            default:
                self.init(status: .apiRequest, message: message)
            }
        case let error as FireblocksAPIError:
            let status: ExitStatus = error.isAuthenticationFailure ? .apiAuthentication : (error.isServerSide ? .apiUnavailable : .apiRequest)
            var message = error.description
            if error.status == 404, let uri = error.uri, FireblocksAPIError.isOutsideV1(uri) {
                message += "; give the base URL with its /v1: --base-url http://HOST:PORT/v1 (or --env sandbox|us|eu|eu2)"
            }
            self.init(status: status, message: message, requestID: error.requestID, httpStatus: error.status,
                      responseBody: error.body)
        case let error as APIClientError:
            let status: ExitStatus
            switch error.code {
            case .badBaseURL, .insecureBaseURL, .badPath, .noEnvironment, .badInput:
                status = .usage
            case .idempotencyConflict, .keyReuse:
                status = .apiRequest
            case .untrustedState:
                status = .fileError
            default:
                status = .apiUnavailable
            }
            self.init(status: status, message: error.reason)
        case let error as AuditError:
            switch error.code {
            case .unwritable, .unreadable, .untrustedFile:
                self.init(status: .fileError, message: error.description)
            case .untrustedKey:
                self.init(status: .keyPolicy, message: error.description + "; find out who made it, then remove it with the token's own tools (pkcs11-tool --delete-object) so that the tool can make a conforming one")
            case .anchorMissing:
                self.init(status: .auditIntegrity, message: error.description + "; once you know why, accept the log as it is with 'fireblocks-hsm audit reanchor --accept-current --reason TEXT' (it records what it cannot prove)")
            case .tornTail:
                self.init(status: .auditIntegrity, message: error.description + "; see it with 'fireblocks-hsm audit verify', then cut it off with 'fireblocks-hsm audit repair --truncate-torn'")
            case .tilesUnusable:
                self.init(status: .auditIntegrity, message: error.description + "; the tiles are derived from the records: rebuild them with 'fireblocks-hsm audit tiles --rebuild' (it first checks the log against the token's checkpoint)")
            default:
                self.init(status: .auditIntegrity, message: error.description)
            }
        case let error as CheckpointError:
            self.init(status: .auditIntegrity, message: "not a signed checkpoint: \(error.description)")
        case let error as OnboardingConflict:
            let flag = Self.flag(forOnboardingField: error.field)
            self.init(status: .key, message: "the onboarding of key '\(error.keyLabel)' on token '\(error.tokenLabel)' was started with \(flag) '\(error.recorded)', and this run asks for '\(error.asked)': one key backs one API user. Re-run with the original value to resume it, or choose a new --key label for a new onboarding")
        case let error as OnboardingStopped:
            let inner = ErrorReport(error.underlying)
            self.init(status: inner.status, message: inner.message + error.note, requestID: inner.requestID,
                      httpStatus: inner.httpStatus, pkcs11: inner.pkcs11, responseBody: inner.responseBody)
        default:
            self.init(status: .internalError, message: "unexpected error: \(error)")
        }
    }

    /// What to do after `api-user wait` gave up, by the status the user was left in: a user
    /// PENDING_ACTIVATION waits for its pairing token, not for time.
    static func waitAdvice(status: String?) -> String {
        switch status {
        case "PENDING_ACTIVATION"?:
            return "; it stays PENDING_ACTIVATION until its pairing token is issued: run 'fireblocks-hsm api-user pairing-token NAME --out FILE' (or 'onboard … --pairing-token-out FILE'), then wait again"
        case "PENDING_DEVICE_PAIRING"?, "PENDING_DEVICE_SETUP"?:
            return "; the pairing token was issued: the device (co-signer) must pair with it; then wait again, or see 'api-user show'"
        case nil:
            return "; the user is not listed: an admin quorum may still have to approve it in the Console; see 'api-user list', or wait longer with --timeout"
        default:
            return "; wait longer with --timeout, or see 'api-user show'"
        }
    }

    /// SoftHSM without SOFTHSM2_CONF reads the system configuration, whose token directory is
    /// usually root's: "no initialised token" then means "not the tokens you made".
    static func softHSMAdvice(reason: String,
                              environment: [String: String] = ProcessInfo.processInfo.environment,
                              defaultTokenDirectory: String = "/var/lib/softhsm/tokens") -> String {
        guard reason.contains("no initialised token"), environment["SOFTHSM2_CONF"] == nil else { return "" }
        let entries = try? FileManager.default.contentsOfDirectory(atPath: defaultTokenDirectory)
        guard entries?.isEmpty ?? true else { return "" }
        return "; SOFTHSM2_CONF is not set, so SoftHSM reads its system configuration (tokens in \(defaultTokenDirectory), \(entries == nil ? "not readable by you" : "empty")): export SOFTHSM2_CONF=PATH/softhsm2.conf of your tokens (hsm-config/create-token prints it)"
    }

    /// The exit class of a use case's error, and the advice that names what to type.
    static func classify(_ code: OperationError.Code) -> (ExitStatus, String) {
        switch code {
        case .noTokenSelected: return (.usage, advice(for: .noTokenSelected))
        case .noKeySelected: return (.usage, advice(for: .noKeySelected))
        case .invalidInput: return (.usage, "")
        case .noTokenMatches: return (.token, "; 'fireblocks-hsm token list' shows the tokens and free slots")
        case .ambiguousToken: return (.token, advice(for: .ambiguousToken))
        case .signatureCheckFailed: return (.token, "")
        case .tokenExists: return (.key, "; choose another --label for the new token, or use the existing one")
        case .keyExists: return (.key, advice(for: .keyExists))
        case .keyNotFound: return (.key, advice(for: .keyNotFound))
        case .ambiguousKey: return (.key, advice(for: .ambiguousKey))
        case .orphanedPublicKey: return (.key, advice(for: .orphanedPublicKey))
        case .keyInUse: return (.key, advice(for: .keyInUse))
        case .keyNotOnToken: return (.key, advice(for: .keyNotOnToken))
        case .notAnRSAKey, .policyViolation: return (.keyPolicy, "")
        case .pinRejected: return (.pin, "")
        case .fileExists: return (.fileError, "; pass --force to replace it")
        case .unwritable, .untrustedState, .auditUnwritable, .auditUnreadable, .auditUntrustedFile: return (.fileError, "")
        case .auditDiskLow:
            return (.fileError, " (then point --audit-dir at it); or, knowing that a record may then not fit, lower the threshold with --audit-min-free SIZE|N% (env FIREBLOCKS_HSM_AUDIT_MIN_FREE)")
        case .auditUntrustedKey:
            return (.keyPolicy, "; find out who made it, then remove it with the token's own tools (pkcs11-tool --delete-object) so that the tool can make a conforming one")
        case .auditAnchorMissing:
            return (.auditIntegrity, "; once you know why, accept the log as it is with 'fireblocks-hsm audit reanchor --accept-current --reason TEXT' (it records what it cannot prove)")
        case .auditTornTail:
            return (.auditIntegrity, "; see it with 'fireblocks-hsm audit verify', then cut it off with 'fireblocks-hsm audit repair --truncate-torn'")
        case .auditInconsistent: return (.auditIntegrity, "")
        default: return (.internalError, "")
        }
    }

    /// The command-line form of an onboarding record's field.
    static func flag(forOnboardingField field: String) -> String {
        switch field {
        case "name": return "--name"
        case "role": return "--role"
        case "coSignerSetupType": return "--co-signer-setup-type"
        case "coSignerSetupIsFirstUser": return "--co-signer-first-user"
        case "subject": return "the CSR subject (--cn, --o, --ou, --c, --st, --l)"
        case "idempotencyKey": return "--idempotency-key"
        case "api": return "the API (--env/--base-url)"
        case "csrSHA256": return "the CSR (SHA-256)"
        case "replaces": return "--replaces"
        default: return field
        }
    }

    /// What to do, for the codes whose facts alone do not say it: the library says what is
    /// wrong, the command line says which flag changes it.
    private static func advice(for code: TokenKeysError.Code) -> String {
        switch code {
        case .noTokenSelected:
            return ": pass --token LABEL or --token 'pkcs11:token=…' (or set FIREBLOCKS_HSM_TOKEN); 'fireblocks-hsm token list' shows the tokens"
        case .noKeySelected:
            return ": pass --key LABEL or --key 'pkcs11:object=…'"
        case .ambiguousToken:
            return "; select one with --token 'pkcs11:token=…;serial=…'"
        case .copyUnsupported:
            return "; pass --id HEX to generate it directly on the token"
        case .invalidSubject:
            return " (the subject comes from --cn, --o, --ou, --c, --st and --l)"
        case .noPINSource:
            return "; pass --pin-source env:NAME or --pin-source file:PATH (or set FIREBLOCKS_HSM_PIN_SOURCE)"
        case .conflictingModule:
            return "; give --module or the URI's module, not both"
        case .invalidArgument:
            return ""
        case .orphanedPublicKey:
            return "; remove it with 'fireblocks-hsm key delete' (it shows what it deletes) and run again"
        case .keyExists:
            return "; choose another --key label (or --id)"
        case .ambiguousKey:
            return "; select one with --key 'pkcs11:object=…;id=%…'"
        case .keyNotFound:
            return "; 'fireblocks-hsm key list' shows the keys"
        case .keyInUse:
            return "; if that user was removed or disabled in the Console, let the deletion ask the API: add --admin-key LABEL with --api-key and --env|--base-url (a user succeeded through 'onboard --replaces' needs no check); --force deletes it anyway (the API user then cannot sign again)"
        case .keyNotOnToken:
            return "; make the key on the token ('fireblocks-hsm onboard', or 'key generate' then 'csr'), or pass --allow-key-off-token to register it anyway (the audit record says so)"
        default:
            return ""
        }
    }

    private enum CodingKeys: String, CodingKey {
        case `class`, message, exitCode, requestId, httpStatus, pkcs11, pkcs11Function, responseBody, code, path, token, tokenSerial, key,
             recordIndex, thrownAt
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(status.className, forKey: .class)
        try container.encode(message, forKey: .message)
        try container.encode(status.rawValue, forKey: .exitCode)
        try container.encodeIfPresent(requestID, forKey: .requestId)
        try container.encodeIfPresent(httpStatus, forKey: .httpStatus)
        try container.encodeIfPresent(pkcs11, forKey: .pkcs11)
        try container.encodeIfPresent(responseBody, forKey: .responseBody)
        try container.encodeIfPresent(code, forKey: .code)
        try container.encodeIfPresent(facts?.path, forKey: .path)
        try container.encodeIfPresent(facts?.tokenLabel, forKey: .token)
        try container.encodeIfPresent(facts?.tokenSerial, forKey: .tokenSerial)
        try container.encodeIfPresent(facts?.function, forKey: .pkcs11Function)
        try container.encodeIfPresent(facts?.keyLabel, forKey: .key)
        try container.encodeIfPresent(facts?.recordIndex, forKey: .recordIndex)
        try container.encodeIfPresent(location, forKey: .thrownAt)
    }

    /// `{"error": {...}}` as one JSON document.
    var json: String {
        struct Envelope: Encodable { let error: ErrorReport }
        return (try? JSONOutput.encode(Envelope(error: self)))
            ?? "{\"error\":{\"class\":\"internal\",\"exitCode\":1,\"message\":\"the error could not be encoded\"}}\n"
    }
}
