import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A request as the scripted server read it.
struct ReceivedRequest: Sendable {
    let method: String
    let target: String
    /// Header names lower-cased.
    let headers: [String: String]
    let body: [UInt8]
}

/// A loopback HTTP/1.1 server that misbehaves on purpose: for each connection it reads one
/// request (the head, and a body of its Content-Length), records it, then hands the socket to
/// `answer`, which writes whatever bytes it likes, as slowly as it likes; the connection is
/// closed when `answer` returns. Plain sockets on threads of its own, so nothing it does waits
/// on the client under test.
final class ScriptedServer: Sendable {
    let port: Int
    private let listener: Int32
    private let received = Mutex<[ReceivedRequest]>([])
    private let stopped = Mutex(false)

    /// What the server has read so far.
    var requests: [ReceivedRequest] { received.withLock { $0 } }

    /// Whether ``stop()`` was called (a slow `answer` should give up then).
    var isStopped: Bool { stopped.withLock { $0 } }

    init(answer: @escaping @Sendable (ReceivedRequest, Connection) -> Void) throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listener = socketFD
        var reuse: Int32 = 1
        setsockopt(socketFD, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, length) == 0 && listen(socketFD, 16) == 0 && getsockname(socketFD, $0, &length) == 0
            }
        }
        guard bound else {
            close(socketFD)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in
            while true {
                let descriptor = accept(socketFD, nil, nil)
                guard descriptor >= 0 else { return }
                Thread { [self] in
                    let connection = Connection(descriptor: descriptor, server: self)
                    defer { close(descriptor) }
                    guard let request = connection.readRequest() else { return }
                    received.withLock { $0.append(request) }
                    answer(request, connection)
                }.start()
            }
        }.start()
    }

    /// Stops accepting, and tells slow answers to give up.
    func stop() {
        stopped.withLock { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// One accepted connection, for an answer script.
    struct Connection: Sendable {
        let descriptor: Int32
        let server: ScriptedServer

        /// Writes `text`; false once the client has gone.
        @discardableResult
        func write(_ text: String) -> Bool { write(Array(text.utf8)) }

        @discardableResult
        func write(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { return false }
                offset += written
            }
            return true
        }

        /// Blocks until the client closes the connection (or the server stops, or 10 minutes
        /// pass): what a server that never answers does.
        func holdUntilTheClientLeaves() {
            let deadline = Date().addingTimeInterval(600)
            while !server.isStopped, Date() < deadline {
                var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                guard Glibc.poll(&poll, 1, 50) >= 0 else { return }
                if poll.revents != 0 {
                    var byte: UInt8 = 0
                    if recv(descriptor, &byte, 1, 0) <= 0 { return }
                }
            }
        }

        /// Writes one byte every `interval` seconds until the client leaves (or the server stops,
        /// or 10 minutes pass): a body that trickles.
        func trickle(_ byte: UInt8 = 0x20, every interval: TimeInterval, chunked: Bool) {
            let deadline = Date().addingTimeInterval(600)
            while !server.isStopped, Date() < deadline {
                let ok = chunked ? write("1\r\n" + String(UnicodeScalar(byte)) + "\r\n") : write([byte])
                guard ok else { return }
                // The trickle's pace is the misbehaviour under test, not a wait.
                usleep(useconds_t(interval * 1_000_000))
            }
        }

        func readRequest() -> ReceivedRequest? {
            var buffer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            var headEnd: Int?
            while headEnd == nil {
                let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { return nil }
                buffer += chunk.prefix(count)
                headEnd = Self.find([13, 10, 13, 10], in: buffer)
            }
            guard let end = headEnd else { return nil }
            let lines = String(decoding: buffer[..<end], as: UTF8.self).components(separatedBy: "\r\n")
            let requestLine = (lines.first ?? "").split(separator: " ").map(String.init)
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            var body = Array(buffer[(end + 4)...])
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while body.count < length {
                let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { return nil }
                body += chunk.prefix(count)
            }
            return ReceivedRequest(method: requestLine.first ?? "", target: requestLine.count > 1 ? requestLine[1] : "",
                                   headers: headers, body: body)
        }

        private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
            guard haystack.count >= needle.count else { return nil }
            for start in 0...(haystack.count - needle.count) where Array(haystack[start..<(start + needle.count)]) == needle {
                return start
            }
            return nil
        }
    }
}
