#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import DurableFiles
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
    ///
    /// Errors never quote the value, not even in part: a malformed pin source is often the PIN
    /// itself, typed where its source should go. They say which kind was wrong and how to pass one.
    public init(parsing text: String) throws(TokenKeysError) {
        if text == "prompt" {
            self = .prompt
        } else if text.hasPrefix("env:") {
            let name = String(text.dropFirst(4))
            guard Self.isValidEnvironmentName(name) else {
                throw TokenKeysError(.invalidArgument, "the env: pin source does not name a valid environment variable (letters, digits and '_', not starting with a digit; the value is not shown, in case it is a PIN): pass env:NAME, e.g. env:HSM_PIN")
            }
            self = .environment(name)
        } else if text.hasPrefix("file:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else {
                throw TokenKeysError(.invalidArgument, "the file: pin source needs a path, e.g. file:/run/secrets/hsm-pin")
            }
            self = .file(path)
        } else {
            throw TokenKeysError(.invalidArgument, "the pin source is not prompt, env:NAME or file:PATH (the value is not shown, in case it is a PIN); a PIN is never given directly: put it in a variable or a 0600 file and pass env:NAME or file:PATH")
        }
    }

    /// Parses a pin source and names, on failure, where it came from (`--pin-source`,
    /// `FIREBLOCKS_HSM_PIN_SOURCE`, a profile's `pinSource` …) instead of its value.
    public init(parsing text: String, origin: String) throws(TokenKeysError) {
        do {
            try self.init(parsing: text)
        } catch {
            throw TokenKeysError(error.code, "\(origin): \(error.reason)")
        }
    }

    /// Interprets a URI `pin-source` value: `file:PATH`, `env:NAME`, or a bare path (RFC 7512
    /// and p11-kit's reading). `|command` forms are refused, as most implementations do.
    public init(uriPINSource text: String) throws(TokenKeysError) {
        if text.hasPrefix("|") {
            throw TokenKeysError(.invalidArgument, "the URI's pin-source is a command ('|…'), which is never run; use pin-source=file:PATH or pin-source=env:NAME")
        }
        if text.hasPrefix("env:") || text.hasPrefix("file:") || text == "prompt" {
            try self.init(parsing: text)
        } else if text.hasPrefix("file://") {
            self = .file(String(text.dropFirst("file://".count)))
        } else if !text.isEmpty, !text.contains(":") {
            self = .file(text)
        } else {
            throw TokenKeysError(.invalidArgument, "the URI's pin-source is not file:PATH, env:NAME or a path (the value is not shown, in case it is a PIN)")
        }
    }

    /// Whether a wrong PIN from this source may be asked for again. Only a person at a
    /// prompt can type a different PIN; re-sending a PIN from a file or the environment only
    /// burns the token's retry counter.
    public var mayRetry: Bool { self == .prompt }

    /// The kind of source only (`prompt`, `env:…`, `file:…`): a variable name or path given
    /// by mistake could be the PIN itself, so no part of it is shown.
    public var description: String {
        switch self {
        case .prompt: return "prompt"
        case .environment: return "env:…"
        case .file: return "file:…"
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
                throw TokenKeysError(.noPINSource, "no PIN: nobody can be asked (standard input is not a terminal) and no PIN source was given")
            }
            let pin = try prompter.readPIN(prompt: promptText)
            guard !pin.isEmpty else { throw TokenKeysError(.pinUnavailable, "no PIN entered") }
            return pin
        case .environment(let name):
            guard let value = getenv(name) else {
                throw TokenKeysError(.pinUnavailable, "the env: pin source names an environment variable that is not set (its name is not shown, in case it is a PIN)")
            }
            let pin = PIN(bytes: UnsafeBufferPointer(start: value, count: strlen(value)).map { UInt8(bitPattern: $0) })
            guard !pin.isEmpty else {
                throw TokenKeysError(.pinUnavailable, "the env: pin source names an environment variable that is empty")
            }
            return pin
        case .file(let path):
            return try Self.readPINFile(path, warn: warn)
        }
    }

    private static func readPINFile(_ path: String, warn: (String) -> Void) throws(TokenKeysError) -> PIN {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw TokenKeysError(.pinUnavailable, "the file: pin source names a file that cannot be read (\(String(cString: strerror(errno))); its path is not shown, in case it is a PIN)")
        }
        defer { close(descriptor) }
        // The trust rule of files that configure what runs (DurableFiles.TrustedFile), judged
        // on the descriptor that is read: whoever else could write the PIN file could make this
        // process send wrong PINs until the token locks. Readable by others only warns
        // (container secrets are often 0444); its path is never shown.
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw TokenKeysError(.pinUnavailable, "the file: pin source names a file that cannot be examined (\(String(cString: strerror(errno))))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw TokenKeysError(.pinUnavailable, "the file: pin source does not name a regular file")
        }
        guard status.st_uid == 0 || status.st_uid == getuid() else {
            throw TokenKeysError(.pinUnavailable, "the PIN file belongs to another user (uid \(status.st_uid)): whoever owns it decides what is sent to the token; it must be yours or root's (nothing was sent)")
        }
        guard status.st_mode & 0o022 == 0 else {
            throw TokenKeysError(.pinUnavailable, "the PIN file is writable by group or others (mode \(String(status.st_mode & 0o777, radix: 8))): chmod 600 it (nothing was sent to the token)")
        }
        // And the directories on its way: whoever can write one of them can put another file
        // at the path (or rename a directory above it and put a tree of their own there).
        do {
            try TrustedFile.verifyDirectories(of: path)
        } catch {
            throw TokenKeysError(.pinUnavailable, Self.untrustedWay(error))
        }
        if status.st_mode & 0o044 != 0 {
            warn("warning: the PIN file is readable by group/others (mode \(String(status.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        // A PIN file is small; refuse anything that is clearly not one.
        let limit = 4096
        var buffer = [UInt8](repeating: 0, count: limit + 1)
        defer { buffer.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } } }
        var total = 0
        while total <= limit {
            let count = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(descriptor, base + total, limit + 1 - total)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw TokenKeysError(.pinUnavailable, "reading the PIN file failed (\(String(cString: strerror(errno))))")
            }
            if count == 0 { break }
            total += count
        }
        guard total <= limit else {
            throw TokenKeysError(.pinUnavailable, "the PIN file is larger than \(limit) bytes: not a PIN file")
        }
        // As people write files: a UTF-8 byte-order mark and one line end (`\n` or `\r\n`) are
        // not part of the PIN. Anything else that could not be meant (a second line, blanks at
        // the end) is refused rather than sent: a wrong PIN costs one of the token's tries.
        var start = 0
        if total >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF { start = 3 }
        var end = total
        if end > start, buffer[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        if end > start, buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        guard end > start else { throw TokenKeysError(.pinUnavailable, "the PIN file is empty") }
        if buffer[start..<end].contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            throw TokenKeysError(.pinUnavailable, "the PIN file has more than one line; it holds the PIN alone (nothing was sent to the token)")
        }
        if buffer[end - 1] == UInt8(ascii: " ") || buffer[end - 1] == UInt8(ascii: "\t") {
            throw TokenKeysError(.pinUnavailable, "the PIN file's line ends in a space or tab, which is most likely not part of the PIN; remove it (nothing was sent to the token)")
        }
        return PIN(bytes: buffer[start..<end])
    }

    /// A refusal of the PIN file's way, without a path (none is shown, in case it is a PIN).
    private static func untrustedWay(_ error: TrustedFileError) -> String {
        let which: String
        switch error.subject {
        case .directory: which = "the directory holding the PIN file"
        case .linkDirectory: which = "the directory holding a symlink on the PIN file's path"
        case .ancestorDirectory: which = "a directory further up the PIN file's path"
        case .file: which = error.code == .otherOwner ? "a symlink on the PIN file's path" : "the PIN file's path"
        }
        let why: String
        switch error.code {
        case .otherOwner: why = "belongs to another user (uid \(error.uid ?? 0)); it must be yours or root's"
        case .writableByOthers: why = "is writable by group or others (mode \(String(error.mode ?? 0, radix: 8))); chmod go-w it (or make it sticky, as /tmp is)"
        default: why = "cannot be examined (\(String(cString: strerror(error.errno ?? 0))))"
        }
        return "\(which) \(why): whoever can write it can put another PIN file in its place (nothing was sent to the token; the path is not shown, in case it is a PIN)"
    }

    private static func isValidEnvironmentName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"): true
            default: false
            }
        }
    }

}

/// Asks a person for a PIN.
public protocol PINPrompter: Sendable {
    /// Shows `prompt` and reads a PIN without echoing it.
    func readPIN(prompt: String) throws(TokenKeysError) -> PIN
}
