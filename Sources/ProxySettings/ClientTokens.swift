import Crypto
import DurableFiles
import ErrorShape
#if canImport(Glibc)
import Glibc
#endif

/// Client bearer tokens (the client-token file): one `NAME TOKEN` per line (`#` comments).
/// Only their SHA-256 is kept; a presented token is compared with every one in constant time,
/// and the name it matched is what the audit records. A client token never reaches Fireblocks.
public struct ClientTokens: Sendable {
    private let entries: [(name: String, digest: [UInt8])]

    /// Reads the file. It holds secrets, so it passes ``TrustedFile``'s check for them: it and
    /// every directory (and symlink) on its way are this user's or root's, writable by nobody
    /// else, and it is readable by nobody else (mode 0600). The buffer that held its bytes is
    /// zeroed once they are parsed (only their SHA-256 digests are kept; the text of the lines,
    /// Swift strings, cannot be zeroed and is released with them).
    public init(file path: String) throws(ProxySettingError) {
        var bytes: [UInt8]
        do {
            bytes = try TrustedFile.read(path, for: .secret, limit: 1 << 20)
        } catch {
            throw Self.refusal(error, path: path)
        }
        defer { TrustedFile.zero(&bytes) }
        try self.init(bytes: bytes, origin: "the client-token file \(path)")
    }

    /// The check ``init(file:)`` makes before it reads, without reading: for a process that
    /// does not use the tokens itself (`fireblocks-hsm`, before it hands `serve` over).
    public static func check(file path: String) throws(ProxySettingError) {
        do {
            _ = try TrustedFile.verify(path, for: .secret)
        } catch {
            throw refusal(error, path: path)
        }
    }

    private static func refusal(_ error: TrustedFileError, path: String) -> ProxySettingError {
        // The path is not shown when it cannot be read: a token pasted where its file belongs
        // must not be echoed.
        if error.code == .unreadable, error.subject == .file(path) {
            return ProxySettingError(.clientTokens, "the client-token file cannot be read (\(String(cString: strerror(error.errno ?? 0))); the value is not shown, in case it is a token)")
        }
        let remedy = TrustedFile.remedy(for: error).map { "; fix it with: \($0)" } ?? ""
        return ProxySettingError(.clientTokens, "the client-token file: \(error); it holds the secrets that let clients sign, so it must be yours and readable and writable by nobody else\(remedy)", path: path)
    }

    /// Parses the file's text.
    public init(text: String, origin: String) throws(ProxySettingError) {
        try self.init(bytes: Array(text.utf8), origin: origin)
    }

    /// Parses the file's bytes, as people write them (a BOM, `\r\n` line ends and trailing
    /// blanks are fine; anything else that is not text is refused with its line number).
    public init(bytes: [UInt8], origin: String) throws(ProxySettingError) {
        var entries: [(String, [UInt8])] = []
        let lines: [TextLines.Line]
        do {
            lines = try TextLines.parse(bytes)
        } catch {
            throw ProxySettingError(.clientTokens, "\(origin), \(error) (the line is not shown: it may hold a token)")
        }
        for entry in lines {
            let number = entry.number - 1
            let line = entry.text.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            // The token is never quoted back, not even in part.
            guard fields.count == 2 else {
                throw ProxySettingError(.clientTokens, "\(origin), line \(number + 1): expected 'NAME TOKEN' (the line is not shown: it may hold a token)")
            }
            let name = String(fields[0])
            guard name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) }),
                  name.count <= 64 else {
                throw ProxySettingError(.clientTokens, "\(origin), line \(number + 1): a client name is letters, digits, '-', '_' or '.', at most 64")
            }
            guard fields[1].unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) }) else {
                throw ProxySettingError(.clientTokens, "\(origin), line \(number + 1): client '\(name)' has a token that is not printable ASCII (what clients send in a header)")
            }
            guard fields[1].utf8.count >= 16 else {
                throw ProxySettingError(.clientTokens, "\(origin), line \(number + 1): client '\(name)' has a token under 16 characters; use e.g. openssl rand -hex 32")
            }
            guard !entries.contains(where: { $0.0 == name }) else {
                throw ProxySettingError(.clientTokens, "\(origin), line \(number + 1): client '\(name)' appears twice")
            }
            entries.append((name, Self.digest(fields[1])))
        }
        guard !entries.isEmpty else { throw ProxySettingError(.clientTokens, "\(origin) names no client") }
        self.entries = entries
    }

    /// SHA-256 of a token, hashed where its bytes are (a copy, when one is needed, is zeroed).
    private static func digest(_ token: Substring) -> [UInt8] {
        var hasher = SHA256()
        let hashed: Void? = token.utf8.withContiguousStorageIfAvailable { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            var copy = Array(token.utf8)
            hasher.update(data: copy)
            TrustedFile.zero(&copy)
        }
        return Array(hasher.finalize())
    }

    /// The client whose token this is, comparing against every entry in constant time.
    public func client(presenting token: String) -> String? {
        let digest = Array(SHA256.hash(data: Array(token.utf8)))
        var found: String?
        for entry in entries {
            var difference: UInt8 = 0
            for index in 0..<digest.count { difference |= digest[index] ^ entry.digest[index] }
            if difference == 0, found == nil { found = entry.name }
        }
        return found
    }

    /// The number of clients.
    public var count: Int { entries.count }
}
