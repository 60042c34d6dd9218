import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A raw TCP client on 127.0.0.1, to misbehave as HTTP clients never do (half-sent heads, idle
/// connections) and to watch what a server does with it.
///
/// Its waits block a thread (`poll`): from async code use the `async` forms, which wait on a
/// Dispatch thread. Blocking the cooperative pool instead would hold the very server under test,
/// whose responders run on that pool (two threads on a two-core machine).
public final class RawConnection: Sendable {
    public let descriptor: Int32

    public init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { close(descriptor) }

    public func send(_ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
    }

    /// True when something (an answer) can be read within `milliseconds`.
    public func hasData(milliseconds: Int32 = 100) -> Bool {
        guard readable(milliseconds) else { return false }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK)) > 0
    }

    /// True when the server closed the connection (a read returns end of file or an error),
    /// looking for `milliseconds` at most. Nothing is consumed: an answer waiting to be read
    /// counts as not closed.
    public func isClosedByPeer(milliseconds: Int32 = 100) -> Bool {
        guard readable(milliseconds) else { return false }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK)) <= 0
    }

    /// Waits up to `milliseconds` for the server to close the connection, reading (and
    /// dropping) whatever it sends first; whether it closed it.
    public func waitUntilClosed(milliseconds: Int32) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(milliseconds))
        while readable(Self.milliseconds(until: deadline)) {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count == 0 { return true }
            if count < 0, errno != EAGAIN, errno != EWOULDBLOCK { return true }
        }
        return false
    }

    static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let left = ContinuousClock.now.duration(to: deadline)
        let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(max(0, min(milliseconds, Int64(Int32.max))))
    }

    /// One whole answer (its head, and a body of its Content-Length), or what came of it before
    /// the server closed the connection or `milliseconds` passed.
    public func read(milliseconds: Int32) -> String {
        let deadline = ContinuousClock.now + .milliseconds(Int(milliseconds))
        var received: [UInt8] = []
        while !Self.isComplete(received), readable(Self.milliseconds(until: deadline)) {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count <= 0 { break }
            received += buffer.prefix(count)
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Whether `bytes` hold a whole HTTP/1.1 answer framed by Content-Length.
    static func isComplete(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return false }
        let length = text[..<end.lowerBound].components(separatedBy: "\r\n").compactMap { line -> Int? in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
            return Int(parts[1].trimmingCharacters(in: .whitespaces))
        }.first ?? 0
        return text[end.upperBound...].utf8.count >= length
    }

    private func readable(_ milliseconds: Int32) -> Bool {
        var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&poll, 1, milliseconds) > 0
    }

    /// ``hasData(milliseconds:)``, waited for off the cooperative pool.
    public func answered(within milliseconds: Int32) async -> Bool { await offPool { self.hasData(milliseconds: milliseconds) } }

    /// ``waitUntilClosed(milliseconds:)``, waited for off the cooperative pool.
    public func closed(within milliseconds: Int32) async -> Bool { await offPool { self.waitUntilClosed(milliseconds: milliseconds) } }

    /// ``isClosedByPeer(milliseconds:)``, waited for off the cooperative pool.
    public func closedByPeer(within milliseconds: Int32) async -> Bool { await offPool { self.isClosedByPeer(milliseconds: milliseconds) } }

    /// ``read(milliseconds:)``, waited for off the cooperative pool.
    public func received(within milliseconds: Int32) async -> String { await offPool { self.read(milliseconds: milliseconds) } }

    private func offPool<R: Sendable>(_ work: @escaping @Sendable () -> R) async -> R {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}
