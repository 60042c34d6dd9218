import PKCS11

/// What token and key selectors share: a label, or an RFC 7512 URI; parsed the same way (a
/// value starting with `pkcs11:` is a URI) and printed the same way (a URI with its secrets
/// redacted).
public protocol LabelOrURISelector: CustomStringConvertible {
    /// The label, when the selector is one.
    var label: String? { get }
    /// The URI, when the selector is one.
    var uri: PKCS11URI? { get }
}

extension LabelOrURISelector {
    /// The label, or the URI with `pin-value` and `pin-source` redacted.
    public var description: String { label ?? uri?.description ?? "" }

    /// Parses `argument` as a URI when it starts with `pkcs11:`, else as a label after
    /// `validateLabel` accepted it.
    static func parse(_ argument: String, validateLabel: (String) throws -> Void) throws -> (label: String?, uri: PKCS11URI?) {
        if PKCS11URI.looksLikeURI(argument) { return (nil, try PKCS11URI(parsing: argument)) }
        try validateLabel(argument)
        return (argument, nil)
    }
}

/// Which token: a label, or an RFC 7512 URI (`pkcs11:token=…;serial=…`).
public enum TokenSelector: Sendable, Equatable, LabelOrURISelector {
    case label(String)
    case uri(PKCS11URI)

    /// A value starting with `pkcs11:` is parsed as a URI; anything else is a label.
    public init(argument: String) throws {
        let parsed = try Self.parse(argument) { label in
            guard !label.isEmpty, label.utf8.count <= 32 else {
                throw TokenKeysError(.invalidArgument, "token label '\(label)' must be 1 to 32 bytes (PKCS#11 CK_TOKEN_INFO.label)")
            }
        }
        if let uri = parsed.uri { self = .uri(uri) } else { self = .label(argument) }
    }

    /// True when this selector picks the token.
    public func matches(token: TokenInfo, slot: SlotInfo, slotID: SlotID, module: ModuleInfo?) -> Bool {
        switch self {
        case .label(let label):
            return token.label == label
        case .uri(let uri):
            let moduleMatches = module.map { uri.matches(module: $0) } ?? (uri.libraryManufacturer == nil
                && uri.libraryDescription == nil && uri.libraryVersion == nil)
            return uri.matches(token: token) && uri.matches(slot: slot, id: slotID) && moduleMatches
        }
    }

    /// The label, when the selector is one.
    public var label: String? {
        if case .label(let label) = self { return label }
        return nil
    }

    /// The URI, when the selector is one.
    public var uri: PKCS11URI? {
        if case .uri(let uri) = self { return uri }
        return nil
    }
}

/// Which key: a label, or a URI (`pkcs11:object=…;id=%01…`).
public enum KeySelector: Sendable, Equatable, LabelOrURISelector {
    case label(String)
    case uri(PKCS11URI)

    /// A value starting with `pkcs11:` is parsed as a URI; anything else is a label.
    public init(argument: String) throws {
        let parsed = try Self.parse(argument) { try KeyLabel.validate($0) }
        if let uri = parsed.uri {
            guard uri.object != nil || uri.id != nil else {
                throw TokenKeysError(.invalidArgument, "key URI '\(uri)' names no key: add object=LABEL or id=%HEX")
            }
            if let type = uri.type, type != .privateKey, type != .publicKey {
                throw TokenKeysError(.invalidArgument, "key URI '\(uri)' has type=\(type): keys are type=private (or public)")
            }
            self = .uri(uri)
        } else {
            self = .label(argument)
        }
    }

    /// Attributes that find the key pair's objects (class excluded).
    public var searchTemplate: [Attribute] {
        switch self {
        case .label(let label): return [.label(label)]
        case .uri(let uri):
            var template: [Attribute] = []
            if let object = uri.object { template.append(.label(object)) }
            if let id = uri.id { template.append(.id(id)) }
            return template
        }
    }

    /// The label, when the selector is one.
    public var label: String? {
        if case .label(let label) = self { return label }
        return nil
    }

    /// The URI, when the selector is one.
    public var uri: PKCS11URI? {
        if case .uri(let uri) = self { return uri }
        return nil
    }
}

/// Rules for key labels.
public enum KeyLabel {
    /// A label for a key about to be made: ``validate(_:)``, and not `pkcs11:…`, which every
    /// command would read back as a URI (and which is, in practice, a URI given where a new
    /// label was asked for).
    public static func validateNew(_ label: String) throws(TokenKeysError) {
        try validate(label)
        if PKCS11URI.looksLikeURI(label) {
            throw TokenKeysError(.invalidArgument, "a new key takes a label, not a pkcs11: URI (the key does not exist yet)")
        }
    }

    /// Labels are free text in PKCS#11; this tool keeps them printable and unambiguous.
    public static func validate(_ label: String) throws(TokenKeysError) {
        guard !label.isEmpty, label.utf8.count <= 128 else {
            throw TokenKeysError(.invalidArgument, "key label must be 1 to 128 bytes")
        }
        guard !label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw TokenKeysError(.invalidArgument, "key label must not contain control characters")
        }
    }
}

/// Decides which module to load from the `--module` value and the module attributes of the
/// token and key URIs.
public enum ModuleResolution {
    /// `module-path` wins over `module-name` inside one URI; a URI module that contradicts the
    /// explicit `--module` is an error rather than a silent choice.
    public static func resolve(explicit: ModuleLocation?, uris: [PKCS11URI]) throws -> ModuleLocation {
        var fromURIs: ModuleLocation?
        for uri in uris {
            let location: ModuleLocation?
            if let path = uri.modulePath {
                location = .path(path)
            } else if let name = uri.moduleName {
                location = .registeredName(name)
            } else {
                location = nil
            }
            guard let location else { continue }
            if let earlier = fromURIs, earlier != location {
                throw TokenKeysError(.conflictingModule, "the token and key URIs name different modules ('\(earlier)' and '\(location)')")
            }
            fromURIs = location
        }
        switch (explicit, fromURIs) {
        case (let explicit?, let fromURI?) where explicit != fromURI:
            throw TokenKeysError(.conflictingModule, "the module given ('\(explicit)') contradicts the URI's module '\(fromURI)'")
        case (let explicit?, _):
            return explicit
        case (nil, let fromURI?):
            return fromURI
        case (nil, nil):
            return .p11KitProxy
        }
    }
}
