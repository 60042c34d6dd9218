import Foundation
import PKCS11

/// Where a PIN comes from. There is deliberately no way to give the PIN itself on the
/// command line: argv is visible in `ps` and shell history.
public enum PINSource: Hashable, Sendable, CustomStringConvertible {
    /// Ask on the terminal, without echo.
    case prompt
    /// Read the environment variable with this name.
    case environment(String)
    /// Read the file at this path (one trailing newline is removed).
    case file(String)

    /// Parses `prompt`, `env:NAME` or `file:PATH` (the forms `--pin-source` accepts).
    public init(parsing text: String) throws(TokenKeysError) {
        if text == "prompt" {
            self = .prompt
        } else if text.hasPrefix("env:") {
            let name = String(text.dropFirst(4))
            guard Self.isValidEnvironmentName(name) else {
                throw TokenKeysError(.invalidArgument, "pin source 'env:\(name)' does not name an environment variable (letters, digits, '_')")
            }
            self = .environment(name)
        } else if text.hasPrefix("file:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else {
                throw TokenKeysError(.invalidArgument, "pin source 'file:' needs a path, e.g. file:/run/secrets/hsm-pin")
            }
            self = .file(path)
        } else {
            throw TokenKeysError(.invalidArgument, "unknown pin source '\(Self.redactedForError(text))': use prompt, env:NAME or file:PATH")
        }
    }

    /// Interprets a URI `pin-source` value: `file:PATH`, `env:NAME`, or a bare path (RFC 7512
    /// and p11-kit's reading). `|command` forms are refused, as most implementations do.
    public init(uriPINSource text: String) throws(TokenKeysError) {
        if text.hasPrefix("|") {
            throw TokenKeysError(.invalidArgument, "pin-source commands ('|…') are not run; use file:PATH or env:NAME")
        }
        if text.hasPrefix("env:") || text.hasPrefix("file:") || text == "prompt" {
            try self.init(parsing: text)
        } else if text.hasPrefix("file://") {
            self = .file(String(text.dropFirst("file://".count)))
        } else if !text.isEmpty, !text.contains(":") {
            self = .file(text)
        } else {
            throw TokenKeysError(.invalidArgument, "unknown URI pin-source '\(Self.redactedForError(text))': use file:PATH or env:NAME")
        }
    }

    /// Whether a wrong PIN from this source may be asked for again. Only a person at a
    /// prompt can type a different PIN; re-sending a PIN from a file or the environment only
    /// burns the token's retry counter.
    public var mayRetry: Bool { self == .prompt }

    public var description: String {
        switch self {
        case .prompt: return "prompt"
        case .environment(let name): return "env:\(name)"
        case .file(let path): return "file:\(path)"
        }
    }

    /// Reads the PIN.
    /// - Parameters:
    ///   - prompter: asks a person; `nil` when there is no terminal.
    ///   - promptText: what the prompt says.
    ///   - warn: receives warnings (e.g. a PIN file readable by others).
    public func readPIN(prompter: (any PINPrompter)?, promptText: String,
                        warn: (String) -> Void) throws(TokenKeysError) -> PIN {
        switch self {
        case .prompt:
            guard let prompter else {
                throw TokenKeysError(.pinUnavailable,
                    "no PIN: standard input is not a terminal, so there is no prompt; pass --pin-source env:NAME or --pin-source file:PATH (or set FIREBLOCKS_HSM_PIN_SOURCE)")
            }
            let pin = try prompter.readPIN(prompt: promptText)
            guard !pin.isEmpty else { throw TokenKeysError(.pinUnavailable, "no PIN entered") }
            return pin
        case .environment(let name):
            guard let value = getenv(name) else {
                throw TokenKeysError(.pinUnavailable, "pin source env:\(name): the environment variable \(name) is not set")
            }
            let pin = PIN(bytes: UnsafeBufferPointer(start: value, count: strlen(value)).map { UInt8(bitPattern: $0) })
            guard !pin.isEmpty else {
                throw TokenKeysError(.pinUnavailable, "pin source env:\(name): the environment variable \(name) is empty")
            }
            return pin
        case .file(let path):
            return try Self.readPINFile(path, warn: warn)
        }
    }

    private static func readPINFile(_ path: String, warn: (String) -> Void) throws(TokenKeysError) -> PIN {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw TokenKeysError(.pinUnavailable, "pin source file:\(path): cannot open it (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        var status = stat()
        if fstat(descriptor, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFREG else {
                throw TokenKeysError(.pinUnavailable, "pin source file:\(path): not a regular file")
            }
            if status.st_mode & 0o077 != 0 {
                warn("warning: PIN file \(path) is readable or writable by group/others (mode \(String(status.st_mode & 0o777, radix: 8))); chmod 600 it")
            }
        }
        // A PIN file is small; refuse anything that is clearly not one.
        let limit = 4096
        var buffer = [UInt8](repeating: 0, count: limit + 1)
        defer { buffer.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        var total = 0
        while total <= limit {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + total, limit + 1 - total) }
            if count < 0 {
                if errno == EINTR { continue }
                throw TokenKeysError(.pinUnavailable, "pin source file:\(path): read failed (\(String(cString: strerror(errno))))")
            }
            if count == 0 { break }
            total += count
        }
        guard total <= limit else {
            throw TokenKeysError(.pinUnavailable, "pin source file:\(path): larger than \(limit) bytes, not a PIN file")
        }
        var end = total
        if end > 0, buffer[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        if end > 0, buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        guard end > 0 else { throw TokenKeysError(.pinUnavailable, "pin source file:\(path): the file is empty") }
        return PIN(bytes: buffer[0..<end])
    }

    private static func isValidEnvironmentName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !name.isEmpty else { return false }
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "_"))
        return !CharacterSet.decimalDigits.contains(first)
            && name.unicodeScalars.allSatisfy { $0.isASCII && allowed.contains($0) }
    }

    /// A malformed pin source might be a PIN typed in the wrong place: never echo it whole.
    private static func redactedForError(_ text: String) -> String {
        text.count <= 3 ? String(repeating: "*", count: text.count) : String(text.prefix(2)) + "…"
    }
}

/// Asks a person for a PIN.
public protocol PINPrompter: Sendable {
    /// Shows `prompt` and reads a PIN without echoing it.
    func readPIN(prompt: String) throws(TokenKeysError) -> PIN
}
