import Foundation
@testable import SigningProxy
import Testing

/// A unix socket's path is taken over only when a connection to it is refused: a live proxy's
/// socket, or one whose state cannot be told, is never removed.
@Suite struct UnixSocketProbeTests {
    @Test func onlyARefusedConnectionIsStale() throws {
        let directory = NSTemporaryDirectory() + "fbhsm-probe-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/p.sock"
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        // Bound, not listening: what a proxy that died leaves behind.
        #expect(UnixSocketPath.probe(path) == .stale)
        // A listener that accepts nothing, its queue soon full: still live, and the probe never
        // waits for it (a blocking connect would hang here until it accepted).
        #expect(listen(descriptor, 0) == 0)
        for _ in 0..<4 { #expect(UnixSocketPath.probe(path) == .listening) }
        #expect(throws: ProxyConfigurationError.self) { try UnixSocketPath.prepare(path) }
        #expect(FileManager.default.fileExists(atPath: path), "a live socket is never removed")
        // A path no socket address can hold: unknown, never stale.
        let long = directory + "/" + String(repeating: "s", count: 120)
        guard case .unknown = UnixSocketPath.probe(long) else {
            Issue.record("a path too long to connect to was taken for stale")
            return
        }
    }
}
