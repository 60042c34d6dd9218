/// The attribute names of a `pkcs11:` URI, read lexically (RFC 7512 §2.3), for what p11-kit's
/// parser does not check: p11-kit ignores an unknown *query* attribute (so
/// `?pin-sorce=file:/p` would silently fall back to another PIN source) and lets a repeated
/// attribute win last. Here both are errors, like an unknown path attribute.
///
/// Also the one place that prints a URI given by the user: ``redacted(_:)`` keeps only what
/// cannot be a secret.
enum PKCS11URIAttributes {
    /// Path attributes this tool understands (RFC 7512 plus p11-kit's slot attributes).
    static let pathNames: Set<String> = [
        "token", "manufacturer", "serial", "model", "library-manufacturer", "library-description",
        "library-version", "slot-id", "slot-description", "slot-manufacturer", "object", "id", "type",
    ]
    /// Query attributes this tool understands.
    static let queryNames: Set<String> = ["pin-source", "pin-value", "module-name", "module-path"]
    /// Query attributes whose values are never printed.
    static let secretQueryNames: Set<String> = ["pin-source", "pin-value"]

    struct Entry {
        let name: String
        let value: Substring
        let inQuery: Bool
        /// Whether the segment was `name=value` (a bare word may be anything, a PIN included).
        let hasValue: Bool
    }

    /// The attributes in order, or nil when the text is not `scheme:path[?query]` shaped.
    static func entries(_ uri: String) -> [Entry]? {
        guard let colon = uri.firstIndex(of: ":") else { return nil }
        let rest = uri[uri.index(after: colon)...]
        let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var entries: [Entry] = []
        for (index, part) in parts.enumerated() {
            let inQuery = index == 1
            for segment in part.split(separator: inQuery ? "&" : ";", omittingEmptySubsequences: true) {
                let pieces = segment.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                entries.append(Entry(name: String(pieces[0]), value: pieces.count > 1 ? pieces[1] : "", inQuery: inQuery,
                                     hasValue: pieces.count > 1))
            }
        }
        return entries
    }

    /// Fails on an attribute name outside the known sets (also one spelt with percent-escapes,
    /// which p11-kit would not honour either) and on an attribute given twice.
    static func check(_ uri: String) throws(PKCS11URIError) {
        guard let entries = entries(uri) else { throw PKCS11URIError(code: .badSyntax, uri: uri) }
        var seen: Set<String> = []
        for entry in entries {
            let known = entry.inQuery ? queryNames : pathNames
            guard known.contains(entry.name) else {
                throw PKCS11URIError(code: .unrecognizedAttribute, uri: uri,
                                     attribute: displayableName(entry), inQuery: entry.inQuery)
            }
            guard seen.insert(entry.name).inserted else {
                throw PKCS11URIError(code: .repeatedAttribute, uri: uri, attribute: entry.name, inQuery: entry.inQuery)
            }
        }
    }

    /// The URI with every value that could be a secret replaced: values of unknown attributes
    /// (a misspelt `pin-value` is still a PIN), of `pin-source`/`pin-value` (also when their
    /// names are percent-encoded), and unknown names themselves when they look like no attribute.
    static func redacted(_ uri: String) -> String {
        guard let colon = uri.firstIndex(of: ":"), let entries = entries(uri) else { return "pkcs11:<not shown>" }
        var path: [String] = []
        var query: [String] = []
        for entry in entries {
            let decodedName = percentDecoded(entry.name)
            let known = entry.inQuery ? queryNames : pathNames
            let text: String
            if known.contains(entry.name), !(entry.inQuery && secretQueryNames.contains(entry.name)) {
                text = entry.name + "=" + entry.value
            } else if known.contains(decodedName) || queryNames.contains(decodedName) || pathNames.contains(decodedName)
                        || displayableName(entry) != nil {
                text = entry.name + "=REDACTED"
            } else {
                text = "REDACTED"
            }
            if entry.inQuery { query.append(text) } else { path.append(text) }
        }
        var result = String(uri[..<colon]) + ":" + path.joined(separator: ";")
        if !query.isEmpty { result += "?" + query.joined(separator: "&") }
        return result
    }

    /// The attribute's name when it can be shown: it came as `name=value` and is shaped like an
    /// attribute name (letters, digits, `-` and `%` escapes, at least three letters, not long).
    /// Otherwise nil: a bare word, or digits, may be a PIN typed in the wrong place.
    static func displayableName(_ entry: Entry) -> String? {
        let name = entry.name
        guard entry.hasValue, name.count <= 32,
              name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "%" }),
              name.unicodeScalars.filter({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) }).count >= 3 else {
            return nil
        }
        return name
    }

    /// `%XX` escapes decoded (RFC 3986 §2.1); anything else, a malformed escape included, kept.
    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.first {
            iterator = iterator.dropFirst()
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension PKCS11URI {
    /// `%XX` escapes decoded, as an attribute name or value of a URI is compared.
    public static func percentDecoded(_ text: String) -> String {
        PKCS11URIAttributes.percentDecoded(text)
    }
}
