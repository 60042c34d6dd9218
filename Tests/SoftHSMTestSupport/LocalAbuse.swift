import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A local user abusing a server's connections (for the availability tests): idle connections
/// that never send anything, and connections that trickle a request head one byte a second.
/// Plain non-blocking sockets, so that none of it waits on the server.
public final class LocalAbuse: @unchecked Sendable {
    private var sockets: [Int32] = []
    private var trickling: [Int32] = []
    private var requesting: [Int32] = []
    private let lock = NSLock()
    private var stopped = false
    private var thread: Thread?

    /// Opens `idle` silent connections, `trickling` slow ones and `requesting` ones that send a
    /// whole request (without any credential) every second on the same connection, to
    /// 127.0.0.1:`port`, and keeps reopening the ones the server closes until ``stop()``.
    public init(port: Int, idle: Int, trickling: Int, requesting: Int = 0) {
        for _ in 0..<idle { if let socket = Self.connect(port) { sockets.append(socket) } }
        for _ in 0..<trickling { if let socket = Self.connect(port) { self.trickling.append(socket) } }
        for _ in 0..<requesting { if let socket = Self.connect(port) { self.requesting.append(socket) } }
        let request = Array("GET /v1/workspace HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let thread = Thread { [self] in
            let head = Array("GET /v1/workspace HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8)
            var sent = 0
            while !isStopped {
                lock.lock()
                for socket in self.trickling {
                    var byte = head[sent % head.count]
                    _ = Glibc.write(socket, &byte, 1)
                }
                self.requesting = self.requesting.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                for socket in self.requesting {
                    _ = request.withUnsafeBytes { Glibc.write(socket, $0.baseAddress, $0.count) }
                }
                // Whoever the server closed comes back at once (an attacker reconnects).
                sockets = sockets.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                self.trickling = self.trickling.map { Self.isClosed($0) ? (Self.reconnect($0, port) ?? $0) : $0 }
                lock.unlock()
                sent += 1
                // One byte (and one unauthenticated request) a second is the abuse itself: the
                // pace of a trickling client, not a wait for something to happen.
                usleep(1_000_000)
            }
        }
        self.thread = thread
        thread.start()
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    /// Closes everything.
    public func stop() {
        lock.lock()
        stopped = true
        for socket in sockets + trickling + requesting { close(socket) }
        sockets = []
        trickling = []
        requesting = []
        lock.unlock()
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
