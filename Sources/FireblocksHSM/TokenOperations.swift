import ErrorShape
import PKCS11
import TokenKeys

/// `token list`, `token init`.
public enum TokenOperations {
    /// Every slot with a token present in the module.
    public static func list(module location: ModuleLocation) throws -> [TokenReport] {
        let module = try PKCS11Module.load(location)
        return try during("listing the tokens of \(location)", token: nil) {
            try TokenLocator.tokens(in: module).map(TokenReport.init)
        }
    }

    /// Initialises an uninitialised token: label, SO PIN, user PIN (both from PIN sources;
    /// a prompt asks twice). Refuses an initialised token (initialising erases every key on it)
    /// and a label another token already has.
    public static func initialize(
        module location: ModuleLocation,
        label: String,
        securityOfficerPINSource: PINSource,
        userPINSource: PINSource,
        observer: any OperationObserver
    ) throws -> TokenReport {
        guard !label.isEmpty, label.utf8.count <= 32 else {
            throw OperationError(.invalidInput, "a token label is 1 to 32 bytes")
        }
        let module = try PKCS11Module.load(location)
        let tokens = try during("listing the tokens of \(location)", token: nil) { try TokenLocator.tokens(in: module) }
        if tokens.contains(where: { $0.info.flags.contains(.tokenInitialized) && $0.info.label == label }) {
            throw OperationError(.tokenExists, "a token labelled '\(label)' already exists in \(location); initialising it again would erase its keys")
        }
        let free = tokens.filter { !$0.info.flags.contains(.tokenInitialized) }
        guard free.count == 1, let target = free.first else {
            throw OperationError(free.isEmpty ? .noTokenMatches : .ambiguousToken,
                free.isEmpty ? "module \(location) has no uninitialised token to initialise"
                             : "module \(location) has \(free.count) uninitialised tokens; this tool initialises only when there is exactly one")
        }

        let securityOfficerPIN = try readNewPIN(securityOfficerPINSource, what: "SO PIN", label: label, observer: observer)
        let userPIN = try readNewPIN(userPINSource, what: "user PIN", label: label, observer: observer)

        try during("C_InitToken on the uninitialised token of \(location)", token: label) {
            try target.slot.initializeToken(label: label, securityOfficerPIN: securityOfficerPIN)
        }
        // Some modules (SoftHSM) move a freshly initialised token to a new slot: find it by label.
        let initialised = try TokenLocator.locate(.label(label), in: module)
        try during("setting the user PIN of token '\(label)'", token: label) {
            let session = try initialised.slot.openSession(readWrite: true)
            try session.login(.securityOfficer, pin: securityOfficerPIN)
            try session.initializeUserPIN(userPIN)
            try session.logout()
        }
        return TokenReport(try TokenLocator.locate(.label(label), in: module))
    }

    private static func readNewPIN(_ source: PINSource, what: String, label: String, observer: any OperationObserver) throws -> PIN {
        let pin = try source.readPIN(prompter: observer.pinPrompter, promptText: "New \(what) for token '\(label)': ", warn: observer.note)
        if source == .prompt {
            let again = try source.readPIN(prompter: observer.pinPrompter, promptText: "Repeat the \(what): ", warn: observer.note)
            guard pin.isEqual(to: again) else { throw OperationError(.pinRejected, "the two \(what)s differ") }
        }
        guard pin.count >= 4 else { throw OperationError(.pinRejected, "the \(what) must be at least 4 characters") }
        return pin
    }
}
