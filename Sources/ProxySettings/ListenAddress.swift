import ErrorShape

/// Where the proxy listens: a unix socket, or a loopback address — never anything else (the
/// proxy signs for whoever reaches it; client tokens narrow that, they do not replace it).
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A unix socket (created 0600 in a 0700 directory owned by this user).
    case unix(path: String)
    /// A loopback address and port (0: any free port).
    case loopback(host: String, port: Int)

    /// Parses `unix:/path/to.sock`, `127.0.0.1:8787`, `[::1]:8787` or `localhost:8787`.
    public init(parsing text: String) throws(ProxySettingError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count < 100, !path.hasSuffix("/") else {
                throw ProxySettingError(.listen, "unix:PATH needs an absolute socket path under 100 bytes, e.g. unix:/run/fireblocks-hsm/bot.sock")
            }
            self = .unix(path: path)
            return
        }
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ProxySettingError(.listen, "'\(text)' is not [IPV6]:PORT")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ProxySettingError(.listen, "'\(text)' is not unix:PATH or HOST:PORT (e.g. 127.0.0.1:8787)")
            }
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        }
        guard let bind = LoopbackAddress.bindHost(host) else {
            throw ProxySettingError(.listen, "'\(text)': the proxy listens on loopback literals only (127.0.0.1 or another 127.x.y.z, ::1, or the word localhost) or a unix socket; it signs for whoever reaches it, so no resolver decides where it listens")
        }
        guard portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let port = Int(portText), (0...65535).contains(port) else {
            throw ProxySettingError(.listen, "'\(text)': the port is 0 to 65535")
        }
        self = .loopback(host: bind, port: port)
    }

    /// As given.
    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .loopback(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

