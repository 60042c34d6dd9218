import Foundation

/// A PostgreSQL server of the test's own: a new cluster in a temporary directory (Debian's
/// `postgresql` package: initdb and pg_ctl from /usr/lib/postgresql/*/bin), password
/// authentication (SCRAM), listening on 127.0.0.1 only, stopped and removed at the end. As root
/// (CI), the server runs as the `postgres` user, which the package creates.
public final class ThrowawayPostgres: @unchecked Sendable {
    public let directory: String
    public let port: Int
    public let user = "fbhsm"
    public let password: String
    private let binaries: String
    private let asPostgres: Bool

    /// The newest installed server's binaries, if any.
    public static var binaries: String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.reversed().map { "\(root)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }

    /// True when the tests can run: a server is installed, or this is CI (where a missing server
    /// is a failure, never a skip).
    public static var available: Bool { binaries != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    /// With TLS: the server's certificate (names `localhost` only, not 127.0.0.1), the CA that
    /// issued it, and a client's certificate and key (CN = ``user``) in a directory of the
    /// test's own (the server's files belong to the server's user).
    public struct TLSFiles: Sendable {
        public let certificateAuthority: String
        /// A CA that issued nothing this server has.
        public let otherCertificateAuthority: String
        public let clientCertificate: String
        public let clientKey: String
        public let directory: String
    }
    /// Set when the server was started with TLS: then it accepts TCP connections over TLS only.
    public let tls: TLSFiles?

    /// A new server. With `tls`, TCP connections are accepted over TLS only (`hostssl`); with
    /// `clientCertificates` too, a client must also show a certificate the test's CA issued for
    /// its user name (`clientcert=verify-full`), besides its password.
    public init(tls withTLS: Bool = false, clientCertificates: Bool = false) throws {
        guard let binaries = Self.binaries else {
            throw TestPostgresError("no PostgreSQL server installed (Debian's postgresql package; ci/install-deps installs it)")
        }
        self.binaries = binaries
        asPostgres = getuid() == 0
        directory = NSTemporaryDirectory() + "fbhsm-pg-" + UUID().uuidString.prefix(8)
        password = "pw-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let passwordFile = directory + "/pw"
        try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        var serverOptions = ""
        if withTLS {
            let files = try Self.makeCertificates(server: directory + "/tls", client: directory + "-client", user: user)
            tls = files
            serverOptions = " -c ssl=on -c ssl_cert_file=\(directory)/tls/server.pem -c ssl_key_file=\(directory)/tls/server.key"
                + " -c ssl_ca_file=\(directory)/tls/ca.pem"
        } else {
            tls = nil
        }
        if asPostgres { try Self.run("/bin/chown", ["-R", "postgres:postgres", directory]) }
        let asPostgres = self.asPostgres
        func run(_ tool: String, _ arguments: [String]) throws {
            try Self.tool(tool, arguments, binaries: binaries, asPostgres: asPostgres)
        }
        try run("initdb", ["-D", directory + "/data", "-U", user, "--auth=scram-sha-256", "--pwfile=" + passwordFile, "-E", "UTF8",
                           "--no-sync", "--no-instructions"])
        try? FileManager.default.removeItem(atPath: passwordFile)
        if withTLS {
            // TCP over TLS only: a connection that succeeds was encrypted.
            let clientCertificate = clientCertificates ? " clientcert=verify-full" : ""
            try """
                local all all scram-sha-256
                hostssl all all 127.0.0.1/32 scram-sha-256\(clientCertificate)

                """.write(toFile: directory + "/data/pg_hba.conf", atomically: false, encoding: .utf8)
        }
        var started: Int?
        for _ in 0..<5 {
            let candidate = Int.random(in: 20_000...45_000)
            let options = "-c listen_addresses=127.0.0.1 -p \(candidate) -k \(directory) -c fsync=off -c max_connections=60" + serverOptions
            if (try? run("pg_ctl", ["-D", directory + "/data", "-l", directory + "/server.log", "-o", options, "-w", "-t", "60", "start"])) != nil {
                started = candidate
                break
            }
        }
        guard let started else {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            throw TestPostgresError("the throwaway PostgreSQL server did not start: \(log.suffix(2000))")
        }
        port = started
    }

    public func stop() {
        _ = try? Self.tool("pg_ctl", ["-D", directory + "/data", "-m", "immediate", "-w", "stop"], binaries: binaries, asPostgres: asPostgres)
        try? FileManager.default.removeItem(atPath: directory)
        if let tls { try? FileManager.default.removeItem(atPath: tls.directory) }
    }

    /// A test CA, the server's certificate for `localhost` (its key 0600), another CA, and a
    /// client certificate for `user` with its key (0600), made with openssl.
    private static func makeCertificates(server: String, client: String, user: String) throws -> TLSFiles {
        for path in [server, client] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        func openssl(_ arguments: [String]) throws { try run("/usr/bin/openssl", arguments) }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        for name in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + key + ["-keyout", "\(client)/\(name).key", "-out", "\(client)/\(name).pem", "-days", "2",
                                                  "-subj", "/CN=fireblocks-hsm test \(name)"])
        }
        func issue(_ name: String, in directory: String, subject: String, extensions: String) throws {
            try openssl(["req"] + key + ["-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).csr", "-subj", subject])
            try extensions.write(toFile: "\(directory)/\(name).ext", atomically: true, encoding: .utf8)
            try openssl(["x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", "\(client)/ca.pem", "-CAkey", "\(client)/ca.key",
                         "-CAcreateserial", "-CAserial", "\(client)/ca.srl", "-out", "\(directory)/\(name).pem", "-days", "2",
                         "-extfile", "\(directory)/\(name).ext"])
            chmod("\(directory)/\(name).key", 0o600)
        }
        try issue("server", in: server, subject: "/CN=localhost",
                  extensions: "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        try issue("client", in: client, subject: "/CN=\(user)",
                  extensions: "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        try FileManager.default.copyItem(atPath: "\(client)/ca.pem", toPath: "\(server)/ca.pem")
        return TLSFiles(certificateAuthority: "\(client)/ca.pem", otherCertificateAuthority: "\(client)/other-ca.pem",
                        clientCertificate: "\(client)/client.pem", clientKey: "\(client)/client.key", directory: client)
    }

    /// The store's address (no password: it comes from the environment); with TLS, by the
    /// name the server's certificate holds, verified against the test's CA.
    public var location: String {
        guard let tls else { return "postgres://\(user)@127.0.0.1:\(port)/postgres" }
        return "postgres://\(user)@localhost:\(port)/postgres?sslmode=verify-full&sslrootcert=\(tls.certificateAuthority)"
    }

    @discardableResult
    private static func tool(_ tool: String, _ arguments: [String], binaries: String, asPostgres: Bool) throws -> String {
        if asPostgres { return try run("/usr/sbin/runuser", ["-u", "postgres", "--", binaries + "/" + tool] + arguments) }
        return try run(binaries + "/" + tool, arguments)
    }

    /// Runs a program to its end with posix_spawn and waitpid, its output in a file (not a pipe:
    /// the server pg_ctl starts would inherit a pipe's end and keep it open; and Foundation's
    /// Process did not notice runuser's exit here).
    @discardableResult
    private static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let outputPath = NSTemporaryDirectory() + "fbhsm-pg-output-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let argv = ["/bin/sh", "-c", "exec \"$0\" \"$@\" </dev/null >'\(outputPath)' 2>&1", executable] + arguments
        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, cArguments, environ)
        guard spawned == 0 else { throw TestPostgresError("cannot start \(executable): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
        guard exited == 0 else {
            throw TestPostgresError("\(executable) \(arguments.first ?? "") exited \(exited): \(text.suffix(1500))")
        }
        return text
    }
}

public struct TestPostgresError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
