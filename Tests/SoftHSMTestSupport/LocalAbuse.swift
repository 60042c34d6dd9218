import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A local user abusing a server's connections (for the availability tests): idle connections
/// that never send anything, and connections that trickle a request head one byte a second.
/// Plain non-blocking sockets, so that none of it waits on the server.
public final class LocalAbuse: Sendable {
    /// The sockets, shared by the test's thread and the abuser's: behind a Mutex.
    private struct Sockets {
        var idle: [Int32] = []
        var trickling: [Int32] = []
        var requesting: [Int32] = []
        var stopped = false
    }
    private let state = Mutex(Sockets())

    /// Opens `idle` silent connections, `trickling` slow ones and `requesting` ones that send a
    /// whole request (without any credential) every second on the same connection, to
    /// 127.0.0.1:`port`, and keeps reopening the ones the server closes until ``stop()``.
    public init(port: Int, idle: Int, trickling: Int, requesting: Int = 0) {
        state.withLock { state in
            for _ in 0..<idle { if let socket = Self.connect(port) { state.idle.append(socket) } }
            for _ in 0..<trickling { if let socket = Self.connect(port) { state.trickling.append(socket) } }
            for _ in 0..<requesting { if let socket = Self.connect(port) { state.requesting.append(socket) } }
        }
        let request = Array("GET /v1/workspace HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let head = Array("GET /v1/workspace HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8)
        let thread = Thread { [self] in
            var sent = 0
            while true {
                let running = self.state.withLock { state -> Bool in
                    guard !state.stopped else { return false }
                    for socket in state.trickling {
                        var byte = head[sent % head.count]
                        _ = Glibc.write(socket, &byte, 1)
                    }
                    state.requesting = state.requesting.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                    for socket in state.requesting {
                        _ = request.withUnsafeBytes { Glibc.write(socket, $0.baseAddress, $0.count) }
                    }
                    // Whoever the server closed comes back at once (an attacker reconnects).
                    state.idle = state.idle.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                    state.trickling = state.trickling.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                    return true
                }
                guard running else { return }
                sent += 1
                // One byte (and one unauthenticated request) a second is the abuse itself: the
                // pace of a trickling client, not a wait for something to happen.
                usleep(1_000_000)
            }
        }
        thread.start()
    }

    /// Closes everything.
    public func stop() {
        state.withLock { state in
            state.stopped = true
            for socket in state.idle + state.trickling + state.requesting { close(socket) }
            state.idle = []
            state.trickling = []
            state.requesting = []
        }
    }

    private static func connect(_ port: Int) -> Int32? {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return nil }
        _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return socket
    }

    private static func reconnect(_ socket: Int32, _ port: Int) -> Int32? {
        close(socket)
        return connect(port)
    }

    /// True when the peer closed the connection (a read returns 0 or a hard error).
    private static func isClosed(_ socket: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count == 0 { return true }
        if count < 0 { return errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN && errno != EINPROGRESS }
        return false
    }
}
