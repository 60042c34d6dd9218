#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PIN (or any other token secret). Never printed: `description` is `PIN(redacted)`.
///
/// The bytes live in one heap buffer that is overwritten before it is freed. Swift `String`s
/// the PIN came from cannot be wiped, so PIN sources read straight into bytes.
public struct PIN: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    private let storage: SecretStorage

    /// A PIN from its bytes (as PKCS#11 takes it: `CK_UTF8CHAR`, no terminator).
    public init(bytes: some Collection<UInt8>) {
        storage = SecretStorage(bytes)
    }

    /// A PIN from a string, UTF-8 encoded.
    public init(_ string: String) {
        self.init(bytes: Array(string.utf8))
    }

    /// Number of bytes.
    public var count: Int { storage.count }

    /// True when the PIN has no bytes.
    public var isEmpty: Bool { storage.count == 0 }

    /// Gives scoped, read-only access to the bytes; do not let them escape. The storage is
    /// never handed out mutable: a PIN cannot be changed (or wiped early) by a caller.
    public func withBytes<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeBufferPointer(storage.buffer))
    }

    /// Constant-time comparison (for tests and confirmation prompts).
    public func isEqual(to other: PIN) -> Bool {
        guard count == other.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<count {
            difference |= storage.buffer[index] ^ other.storage.buffer[index]
        }
        return difference == 0
    }

    /// How it reads in messages.
    public var description: String { "PIN(redacted)" }
    /// How it reads in debug output.
    public var debugDescription: String { "PIN(redacted)" }
}

/// Owns the PIN bytes and wipes them on release. `@unchecked Sendable`: the bytes are written
/// only by `init` and wiped only by `deinit`, when no copy of the PIN is left (exercised by
/// SendableInvariantTests: copies read on many threads while others are dropped).
private final class SecretStorage: @unchecked Sendable {
    // Never mutated after init; wiped in deinit, when no other reference exists.
    let buffer: UnsafeMutableBufferPointer<UInt8>
    var count: Int { buffer.count }

    init(_ bytes: some Collection<UInt8>) {
        buffer = .allocate(capacity: bytes.count)
        _ = buffer.initialize(from: bytes)
    }

    deinit {
        if let base = buffer.baseAddress {
            // explicit_bzero is not elided by the optimiser, unlike a plain loop.
            explicit_bzero(base, buffer.count)
        }
        buffer.deallocate()
    }
}
