import ErrorShape

/// A setting of the proxy that cannot be used, and why (never a secret's value). The command
/// line names the flag for ``code``.
public struct ProxySettingError: LibraryError, Hashable {
    /// Which setting.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// Where to listen (``ListenAddress``).
        public static let listen = Code("listen")
        /// A rule of the allowlist (``AllowRule``).
        public static let allowRule = Code("allowRule")
        /// The rate limit (``RateLimit``).
        public static let rate = Code("rate")
        /// The largest request body (``ByteSize``).
        public static let maximumBodySize = Code("maximumBodySize")
        /// The client tokens' file (``ClientTokens``).
        public static let clientTokens = Code("clientTokens")
        /// Records per checkpoint.
        public static let checkpointEvery = Code("checkpointEvery")
        /// Time between checkpoints.
        public static let checkpointInterval = Code("checkpointInterval")
        /// Another setting (a cap, the API key, the JWT lifetime).
        public static let other = Code("other")
    }

    public let code: Code
    public let reason: String
    public let location: ErrorLocation
    public var facts: ErrorFacts { ErrorFacts(path: path) }
    /// The file, for ``Code/clientTokens``.
    public let path: String?

    /// An error: the setting and why it cannot be used.
    public init(_ code: Code, _ reason: String, path: String? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.path = path
        self.location = ErrorLocation(file: file, line: line)
    }

    public var description: String { reason }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// A size: `1048576`, `512KiB`, `1MiB` (also `K`/`M`, `KB`/`MB` as binary multiples).
public enum ByteSize {
    /// The number of bytes, 1 to 1 GiB.
    public static func parse(_ text: String) throws(ProxySettingError) -> Int {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20),
                                      ("K", 1 << 10), ("M", 1 << 20), ("B", 1)]
        var number = Substring(text)
        var multiplier = 1
        for (suffix, value) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            multiplier = value
            break
        }
        guard let count = Int(number), count > 0 else {
            throw ProxySettingError(.maximumBodySize, "'\(text)' is not a size (e.g. 1048576, 512KiB, 1MiB)")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
        guard !overflow, bytes <= 1 << 30 else { throw ProxySettingError(.maximumBodySize, "'\(text)' is over 1GiB") }
        return bytes
    }
}
