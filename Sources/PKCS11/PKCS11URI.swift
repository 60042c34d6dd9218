import ErrorShape
internal import CPKCS11

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An RFC 7512 `pkcs11:` URI, parsed by p11-kit's parser (the grammar has traps: `&` is
/// legal in a path value and `;` in a query value, so naive splitting is wrong).
///
/// Fails closed: a URI with an attribute p11-kit does not recognise is refused instead of
/// being silently widened to match more. A URI that carries both `pin-value` and `pin-source`
/// is refused. `pin-value` is never printed: ``description`` shows `pin-value=REDACTED`.
public struct PKCS11URI: Sendable, Equatable, CustomStringConvertible {
    // Token attributes (matched against CK_TOKEN_INFO).
    /// `token`: the token label.
    public var token: String?
    /// `manufacturer`: the token manufacturer.
    public var manufacturer: String?
    /// `model`: the token model.
    public var model: String?
    /// `serial`: the token serial number.
    public var serial: String?

    // Slot attributes.
    /// `slot-id`.
    public var slotID: SlotID?
    /// `slot-description`.
    public var slotDescription: String?
    /// `slot-manufacturer`.
    public var slotManufacturer: String?

    // Library attributes (matched against CK_INFO).
    /// `library-manufacturer`.
    public var libraryManufacturer: String?
    /// `library-description`.
    public var libraryDescription: String?
    /// `library-version`.
    public var libraryVersion: Version?

    // Object attributes.
    /// `object`: the object label (`CKA_LABEL`).
    public var object: String?
    /// `id`: the object id (`CKA_ID`), raw bytes.
    public var id: [UInt8]?
    /// `type`: the object class.
    public var type: ObjectClass?

    // Query attributes.
    /// `pin-source`: where the PIN comes from (`file:/path`, `env:NAME`, or a bare path).
    public var pinSource: String?
    /// `pin-value`: the PIN itself. Redacted whenever the URI is printed.
    public var pinValue: PIN?
    /// `module-name`: a p11-kit registered module name.
    public var moduleName: String?
    /// `module-path`: a module file.
    public var modulePath: String?

    /// The path attributes this parser understands.
    public static var pathAttributeNames: Set<String> { PKCS11URIAttributes.pathNames }
    /// The query attributes this parser understands.
    public static var queryAttributeNames: Set<String> { PKCS11URIAttributes.queryNames }

    /// An empty URI (`pkcs11:`), which matches everything.
    public init() {}

    /// Parses a `pkcs11:` URI.
    public init(parsing string: String) throws(PKCS11URIError) {
        guard let uri = p11_kit_uri_new() else {
            throw PKCS11URIError(code: .unexpected, uri: string)
        }
        defer { p11_kit_uri_free(uri) }

        guard string.lowercased().hasPrefix("pkcs11:") else { throw PKCS11URIError(code: .badScheme, uri: string) }
        try PKCS11URIAttributes.check(string)
        let rc = p11_kit_uri_parse(string, P11_KIT_URI_FOR_ANY, uri)
        if rc != P11_KIT_URI_OK.rawValue {
            throw PKCS11URIError(code: PKCS11URIError.Code(p11KitResult: rc), uri: string)
        }
        if p11_kit_uri_any_unrecognized(uri) != 0 {
            throw PKCS11URIError(code: .unrecognizedAttribute, uri: string)
        }

        if let info = p11_kit_uri_get_token_info(uri) {
            token = optionalPadded(&info.pointee.label)
            manufacturer = optionalPadded(&info.pointee.manufacturerID)
            model = optionalPadded(&info.pointee.model)
            serial = optionalPadded(&info.pointee.serialNumber)
        }
        if let info = p11_kit_uri_get_slot_info(uri) {
            slotDescription = optionalPadded(&info.pointee.slotDescription)
            slotManufacturer = optionalPadded(&info.pointee.manufacturerID)
        }
        let slot = p11_kit_uri_get_slot_id(uri)
        if slot != CK_SLOT_ID.max { slotID = SlotID(rawValue: UInt(slot)) }
        if let info = p11_kit_uri_get_module_info(uri) {
            libraryManufacturer = optionalPadded(&info.pointee.manufacturerID)
            libraryDescription = optionalPadded(&info.pointee.libraryDescription)
            // p11-kit marks "no library-version" with major = 0xff.
            if info.pointee.libraryVersion.major != 0xff {
                libraryVersion = Version(info.pointee.libraryVersion)
            }
        }
        if let label = p11_kit_uri_get_attribute(uri, CK_ATTRIBUTE_TYPE(CKA_LABEL)) {
            object = String(decoding: attributeBytes(label.pointee), as: UTF8.self)
        }
        if let identifier = p11_kit_uri_get_attribute(uri, CK_ATTRIBUTE_TYPE(CKA_ID)) {
            id = attributeBytes(identifier.pointee)
        }
        if let objectClass = p11_kit_uri_get_attribute(uri, CK_ATTRIBUTE_TYPE(CKA_CLASS)) {
            let bytes = attributeBytes(objectClass.pointee)
            guard bytes.count == MemoryLayout<CK_ULONG>.size else {
                throw PKCS11URIError(code: .badSyntax, uri: string)
            }
            type = ObjectClass(rawValue: UInt(bytes.withUnsafeBytes { $0.loadUnaligned(as: CK_ULONG.self) }))
        }
        pinSource = p11_kit_uri_get_pin_source(uri).map { String(cString: $0) }
        if let value = p11_kit_uri_get_pin_value(uri) {
            pinValue = PIN(bytes: UnsafeBufferPointer(start: value, count: strlen(value)).map { UInt8(bitPattern: $0) })
        }
        moduleName = p11_kit_uri_get_module_name(uri).map { String(cString: $0) }
        modulePath = p11_kit_uri_get_module_path(uri).map { String(cString: $0) }

        if pinValue != nil && pinSource != nil {
            throw PKCS11URIError(code: .pinValueWithPINSource, uri: string)
        }
    }

    /// True when the string starts with the `pkcs11:` scheme (case-insensitively), i.e. it
    /// should be parsed as a URI rather than taken as a label.
    public static func looksLikeURI(_ string: String) -> Bool {
        string.lowercased().hasPrefix("pkcs11:")
    }

    // MARK: Matching

    /// True when every token attribute the URI sets equals the token's.
    public func matches(token info: TokenInfo) -> Bool {
        equalIfSet(token, info.label) && equalIfSet(manufacturer, info.manufacturer)
            && equalIfSet(model, info.model) && equalIfSet(serial, info.serialNumber)
    }

    /// True when every slot attribute the URI sets equals the slot's.
    public func matches(slot info: SlotInfo, id: SlotID) -> Bool {
        (slotID == nil || slotID == id) && equalIfSet(slotDescription, info.slotDescription)
            && equalIfSet(slotManufacturer, info.manufacturer)
    }

    /// True when every library attribute the URI sets equals the module's.
    public func matches(module info: ModuleInfo) -> Bool {
        equalIfSet(libraryManufacturer, info.manufacturer)
            && equalIfSet(libraryDescription, info.libraryDescription)
            && (libraryVersion == nil || libraryVersion == info.libraryVersion)
    }

    /// The object attributes as a search template (`CKA_LABEL`, `CKA_ID`, `CKA_CLASS`).
    public var objectTemplate: [Attribute] {
        var template: [Attribute] = []
        if let object { template.append(.label(object)) }
        if let id { template.append(.id(id)) }
        if let type { template.append(.class(type)) }
        return template
    }

    /// True when the URI names an object (label, id or type).
    public var identifiesObject: Bool { object != nil || id != nil || type != nil }

    /// True when the URI sets any slot, token or library attribute.
    public var identifiesToken: Bool {
        token != nil || manufacturer != nil || model != nil || serial != nil || slotID != nil
            || slotDescription != nil || slotManufacturer != nil || libraryManufacturer != nil
            || libraryDescription != nil || libraryVersion != nil
    }

    // MARK: Formatting

    /// The URI as text, formatted by p11-kit. `pin-value` is replaced by `REDACTED` unless
    /// `revealingPINValue` is set; so is `pin-source` unless `revealingPINSource` is set (a
    /// pin-source can be a PIN typed in the wrong place).
    public func formatted(revealingPINValue: Bool = false, revealingPINSource: Bool = false) throws(PKCS11URIError) -> String {
        guard let uri = p11_kit_uri_new() else { throw PKCS11URIError(code: .unexpected, uri: "") }
        defer { p11_kit_uri_free(uri) }

        if let info = p11_kit_uri_get_token_info(uri) {
            try setPadded(&info.pointee.label, token)
            try setPadded(&info.pointee.manufacturerID, manufacturer)
            try setPadded(&info.pointee.model, model)
            try setPadded(&info.pointee.serialNumber, serial)
        }
        if let info = p11_kit_uri_get_slot_info(uri) {
            try setPadded(&info.pointee.slotDescription, slotDescription)
            try setPadded(&info.pointee.manufacturerID, slotManufacturer)
        }
        if let slotID { p11_kit_uri_set_slot_id(uri, CK_SLOT_ID(slotID.rawValue)) }
        if let info = p11_kit_uri_get_module_info(uri) {
            try setPadded(&info.pointee.manufacturerID, libraryManufacturer)
            try setPadded(&info.pointee.libraryDescription, libraryDescription)
            if let libraryVersion {
                info.pointee.libraryVersion.major = libraryVersion.major
                info.pointee.libraryVersion.minor = libraryVersion.minor
            }
        }
        for attribute in objectTemplate {
            withCTemplate([attribute]) { pointer, _ in
                _ = p11_kit_uri_set_attribute(uri, pointer)
            }
        }
        if let pinSource { p11_kit_uri_set_pin_source(uri, revealingPINSource ? pinSource : "REDACTED") }
        if let pinValue {
            if revealingPINValue {
                pinValue.withBytes { bytes in
                    var cString = Array(bytes) + [0]
                    cString.withUnsafeMutableBufferPointer { buffer in
                        buffer.withMemoryRebound(to: CChar.self) { p11_kit_uri_set_pin_value(uri, $0.baseAddress) }
                        if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
                    }
                }
            } else {
                p11_kit_uri_set_pin_value(uri, "REDACTED")
            }
        }
        if let moduleName { p11_kit_uri_set_module_name(uri, moduleName) }
        if let modulePath { p11_kit_uri_set_module_path(uri, modulePath) }

        var output: UnsafeMutablePointer<CChar>?
        let rc = p11_kit_uri_format(uri, P11_KIT_URI_FOR_ANY, &output)
        guard rc == P11_KIT_URI_OK.rawValue, let output else {
            throw PKCS11URIError(code: PKCS11URIError.Code(p11KitResult: rc), uri: "")
        }
        defer { free(output) }
        return String(cString: output)
    }

    /// The URI with `pin-value` and `pin-source` redacted.
    public var description: String {
        (try? formatted()) ?? "pkcs11:<unprintable>"
    }

    /// Equal by value.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        let pinsEqual: Bool
        switch (lhs.pinValue, rhs.pinValue) {
        case (nil, nil): pinsEqual = true
        case (let left?, let right?): pinsEqual = left.isEqual(to: right)
        default: pinsEqual = false
        }
        return pinsEqual && lhs.token == rhs.token && lhs.manufacturer == rhs.manufacturer
            && lhs.model == rhs.model && lhs.serial == rhs.serial && lhs.slotID == rhs.slotID
            && lhs.slotDescription == rhs.slotDescription && lhs.slotManufacturer == rhs.slotManufacturer
            && lhs.libraryManufacturer == rhs.libraryManufacturer
            && lhs.libraryDescription == rhs.libraryDescription && lhs.libraryVersion == rhs.libraryVersion
            && lhs.object == rhs.object && lhs.id == rhs.id && lhs.type == rhs.type
            && lhs.pinSource == rhs.pinSource && lhs.moduleName == rhs.moduleName
            && lhs.modulePath == rhs.modulePath
    }
}

/// A `pkcs11:` URI that could not be used.
///
/// Never quotes a secret: ``uri`` is the URI with every value that could be one replaced
/// (`pin-value`, `pin-source`, and any unknown attribute's value, percent-encoded names included).
public struct PKCS11URIError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        public static let badScheme = Code("badScheme")
        public static let badEncoding = Code("badEncoding")
        public static let badSyntax = Code("badSyntax")
        public static let badVersion = Code("badVersion")
        /// An attribute this tool does not know (or a value too long for its field): such a URI
        /// would otherwise match nothing, or, worse, more than meant; an unknown query attribute
        /// would silently drop what it was meant to say (a misspelt pin-source).
        public static let unrecognizedAttribute = Code("unrecognizedAttribute")
        /// The same attribute twice: which one wins is ambiguous, so neither does.
        public static let repeatedAttribute = Code("repeatedAttribute")
        /// Both `pin-value` and `pin-source`: which one wins is ambiguous, so neither does.
        public static let pinValueWithPINSource = Code("pinValueWithPINSource")
        /// A value longer than its PKCS#11 field.
        public static let valueTooLong = Code("valueTooLong")
        public static let unexpected = Code("unexpected")

        init(p11KitResult rc: Int32) {
            switch rc {
            case P11_KIT_URI_BAD_SCHEME.rawValue: self = .badScheme
            case P11_KIT_URI_BAD_ENCODING.rawValue: self = .badEncoding
            case P11_KIT_URI_BAD_SYNTAX.rawValue: self = .badSyntax
            case P11_KIT_URI_BAD_VERSION.rawValue: self = .badVersion
            default: self = .unexpected
            }
        }
    }

    /// The code.
    public let code: Code
    /// The URI as given, with every value that could be a secret replaced by `REDACTED`.
    public let uri: String
    /// The attribute concerned, when it can be named without echoing a secret.
    public let attribute: String?
    /// Whether the attribute was in the query part.
    public let inQuery: Bool
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(code: Code, uri: String, attribute: String? = nil, inQuery: Bool = false, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.uri = PKCS11URIAttributes.redacted(uri)
        self.attribute = attribute
        self.inQuery = inQuery
        self.location = ErrorLocation(file: file, line: line)
    }

    /// How it reads in messages: the URI, redacted, and what is wrong with it.
    public var description: String { "bad PKCS#11 URI '\(uri)': \(reason)" }

    /// What is wrong with the URI.
    public var reason: String {
        let reason: String
        switch code {
        case .badScheme: reason = "it does not start with 'pkcs11:'"
        case .badEncoding: reason = "it has a bad percent-encoding"
        case .badSyntax: reason = "it is not valid RFC 7512 syntax"
        case .badVersion: reason = "its library-version is not MAJOR.MINOR"
        case .unrecognizedAttribute:
            let part = inQuery ? "query" : "path"
            let known = (inQuery ? PKCS11URIAttributes.queryNames : PKCS11URIAttributes.pathNames).sorted().joined(separator: ", ")
            if let attribute {
                reason = "unknown \(part) attribute '\(attribute)' — refused rather than ignored (\(part) attributes: \(known))"
            } else {
                reason = "it has a \(part) attribute this tool does not recognise (not shown; \(part) attributes: \(known)) or a value too long for its field — refused rather than ignored"
            }
        case .repeatedAttribute: reason = "'\(attribute ?? "an attribute")' appears more than once"
        case .pinValueWithPINSource: reason = "it has both pin-value and pin-source"
        case .valueTooLong: reason = "a value is longer than its PKCS#11 field"
        default: reason = "p11-kit could not process it"
        }
        return reason
    }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

// MARK: - Helpers

private func equalIfSet(_ wanted: String?, _ actual: String) -> Bool {
    guard let wanted else { return true }
    return wanted == actual
}

/// A p11-kit URI struct field: all NUL when unset, blank-padded when set.
private func optionalPadded<T>(_ field: inout T) -> String? {
    let isUnset = withUnsafeBytes(of: &field) { $0.first == 0 }
    return isUnset ? nil : paddedString(&field)
}

private func setPadded<T>(_ field: inout T, _ value: String?) throws(PKCS11URIError) {
    guard let value else { return }
    let bytes = Array(value.utf8)
    let fits = withUnsafeMutableBytes(of: &field) { raw -> Bool in
        guard bytes.count <= raw.count else { return false }
        for index in raw.indices { raw[index] = index < bytes.count ? bytes[index] : 0x20 }
        return true
    }
    if !fits { throw PKCS11URIError(code: .valueTooLong, uri: "") }
}

private func attributeBytes(_ attribute: CK_ATTRIBUTE) -> [UInt8] {
    guard let value = attribute.pValue, attribute.ulValueLen > 0,
          attribute.ulValueLen != CK_ULONG.max else { return [] }
    return Array(UnsafeRawBufferPointer(start: value, count: Int(attribute.ulValueLen)))
}
