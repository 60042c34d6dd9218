import ProxySettings
import ErrorShape
import Foundation

/// A configuration value the proxy refuses; says which setting and why (never a secret's value).
public struct ProxyConfigurationError: LibraryError {
    /// What the proxy refused.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// It cannot listen where it was told (the socket's directory, the address in use).
        public static let cannotListen = Code("cannotListen")
        /// A request target that could mean something else to the server than to the policy.
        public static let ambiguousTarget = Code("ambiguousTarget")
        /// A setting the proxy cannot work with (``ProxyConfigurationError/setting`` names it).
        public static let invalidSetting = Code("invalidSetting")
        /// The token gave no audit key to seal the proxy's records with.
        public static let auditUnavailable = Code("auditUnavailable")
        /// Something else the proxy cannot do (a benchmark's own request refused).
        public static let other = Code("other")
    }
    public let code: Code
    /// Why.
    public let reason: String
    /// The setting, for ``Code/invalidSetting``.
    public let setting: ProxySettingError.Code?
    public let location: ErrorLocation
    /// An error with its reason.
    public init(_ code: Code = .other, _ reason: String, setting: ProxySettingError.Code? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.setting = setting
        self.location = ErrorLocation(file: file, line: line)
    }
    /// An error with only its reason.
    public init(_ reason: String, file: String = #fileID, line: UInt = #line) {
        self.init(.other, reason, file: file, line: line)
    }
    /// The reason.
    public var description: String { reason }
}

/// A request target as the proxy judges it: the path and query exactly as received (they are
/// forwarded and signed byte for byte), refused when the path could mean something else to the
/// server than to the allowlist — dot segments, empty segments, encoded slashes, dots or
/// backslashes, anything outside RFC 3986's path characters.
public struct RequestPath: Sendable, Equatable {
    /// What is forwarded and signed: path and `?query`.
    public let target: String
    /// The path's segments (for the allowlist).
    public let segments: [Substring]

    /// Checks `target` (a request's path and query).
    public init(_ target: String) throws {
        guard target.hasPrefix("/"), target.utf8.count <= 8192 else {
            throw ProxyConfigurationError(.ambiguousTarget, "the request target must be an absolute path under 8 KiB")
        }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let lowered = path.lowercased()
        for encoded in ["%2f", "%2e", "%5c", "%00", "%25"] where lowered.contains(encoded) {
            throw ProxyConfigurationError(.ambiguousTarget, "the path has an encoded '/', '.', '\\', NUL or '%' (\(encoded)): refused, so that the allowlist and the server read it alike")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%".unicodeScalars)
        guard path.unicodeScalars.allSatisfy(allowed.contains) else {
            throw ProxyConfigurationError(.ambiguousTarget, "the path has characters that must be percent-encoded")
        }
        let query = target.dropFirst(path.count)
        guard query.unicodeScalars.allSatisfy({ allowed.contains($0) || $0 == "?" }) else {
            throw ProxyConfigurationError(.ambiguousTarget, "the query has characters that must be percent-encoded")
        }
        // What the path and query mean once decoded must be text: bytes that are not UTF-8
        // (`%c0%ae`, `%ff`) are read differently by every party (HTTP clients drop or rewrite
        // such a path), so the target signed and recorded would not be the one forwarded.
        for (part, name) in [(Substring(path), "path"), (query.dropFirst(), "query")] {
            guard let decoded = Self.percentDecoded(part) else {
                throw ProxyConfigurationError(.ambiguousTarget, "the \(name) has a '%' that is not followed by two hex digits")
            }
            guard let text = String(validating: decoded, as: UTF8.self) else {
                throw ProxyConfigurationError(.ambiguousTarget, "the \(name) percent-decodes to bytes that are not UTF-8: refused, so that what is signed is what the server reads")
            }
            guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw ProxyConfigurationError(.ambiguousTarget, "the \(name) percent-decodes to a control character (NUL, a line end …): refused")
            }
        }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for segment in segments {
            // What some servers make of a segment: its `;parameters` dropped (Tomcat, Jetty),
            // percent-decoded, compatibility-normalised (fullwidth dots), trailing blanks trimmed.
            let bare = segment.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let decoded = Self.percentDecoded(bare).flatMap { String(validating: $0, as: UTF8.self) } ?? String(bare)
            let normalized = decoded.precomposedStringWithCompatibilityMapping.trimmingCharacters(in: .whitespaces)
            guard !segment.isEmpty, !bare.isEmpty, !normalized.isEmpty, !normalized.allSatisfy({ $0 == "." }) else {
                throw ProxyConfigurationError(.ambiguousTarget, "the path has an empty segment or one of dots only (also as '..;', '%20'-padded or fullwidth): refused, so that no server reads it as another path")
            }
            if normalized.unicodeScalars.contains(where: { $0 == "/" || $0 == "\\" || $0 == "?" || $0 == "#" }) {
                throw ProxyConfigurationError(.ambiguousTarget, "a path segment decodes to '/', '\\', '?' or '#': refused, so that no server reads it as another path")
            }
        }
        self.target = target
        self.segments = segments
    }

    /// The bytes `%HH` sequences stand for (other characters as themselves); nil for a `%`
    /// not followed by two hex digits.
    static func percentDecoded(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

