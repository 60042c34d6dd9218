/// The one rule both servers (the signing proxy and the stand-in) bind by: loopback literals
/// only, so that no resolver ever decides where a server that trusts its callers listens.
public enum LoopbackAddress {
    /// The literal to bind for `host`: a dotted-decimal `127.x.y.z` without leading zeros (a
    /// resolver would read `010` as octal), `::1` (or its full form), or the exact word
    /// `localhost` (lowercase), bound as `127.0.0.1`. Nil for anything else, including
    /// `LOCALHOST` or another name, which only a resolver could turn into an address.
    public static func bindHost(_ host: String) -> String? {
        if host == "localhost" { return "127.0.0.1" }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") && host.utf8.count >= 2 ? String(host.dropFirst().dropLast()) : host
        if bare == "::1" || bare == "0:0:0:0:0:0:0:1" { return "::1" }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets[0] == "127" else { return nil }
        for octet in octets {
            guard (1...3).contains(octet.utf8.count), octet.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                  octet == "0" || octet.first != "0", let value = Int(octet), value <= 255 else { return nil }
        }
        return bare
    }
}
