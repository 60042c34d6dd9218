import Foundation
import SoftHSMTestSupport
import Testing

/// The commands, in order, through the executable.
@Suite("Command line: keygen to CSR")
struct CLIEndToEndTests {
    @Test func tokenListShowsTheTokenWithoutAPIN() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["token", "list", "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        let tokens = try #require(try result.json() as? [[String: Any]])
        let token = try #require(tokens.first { $0["label"] as? String == "fb" })
        #expect(token["initialized"] as? Bool == true)
        #expect((token["uri"] as? String)?.hasPrefix("pkcs11:") == true)
        #expect(tokens.contains { $0["initialized"] as? Bool == false }, "SoftHSM's free slot is listed too")
    }

    @Test func generateShowListExportCSR() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }

        let generated = try cli.runOnToken(["key", "generate", "--key", "api-user-1", "--bits", "2048", "--json"])
        #expect(generated.status == 0, "\(generated.standardError)")
        let key = try #require(try generated.json() as? [String: Any])
        #expect(key["verdict"] as? String == "meets-policy")
        #expect(key["bits"] as? Int == 2048)
        let fingerprint = try #require(key["fingerprintSHA256"] as? String)
        let attributes = try #require(key["privateKeyAttributes"] as? [String: Any])
        #expect(attributes["CKA_NEVER_EXTRACTABLE"] as? Bool == true)
        #expect(attributes["CKA_MODIFIABLE"] as? Bool == false)

        let shown = try cli.runOnToken(["key", "show", "--key", "api-user-1"])
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect(shown.standardOutput.contains("Verdict  meets policy"))
        #expect(shown.standardOutput.contains(fingerprint))

        // A key URI naming its token selects the token too.
        let byURI = try cli.run(["key", "show", "--key", "pkcs11:token=fb;object=api-user-1", "--pin-source", "env:TEST_HSM_PIN", "--json"])
        #expect(byURI.status == 0, "\(byURI.standardError)")
        #expect((try byURI.json() as? [String: Any])?["fingerprintSHA256"] as? String == fingerprint)

        let listed = try cli.runOnToken(["key", "list", "--json"])
        let keys = try #require(try listed.json() as? [[String: Any]])
        #expect(keys.map { $0["label"] as? String } == ["api-user-1"])

        let pem = try cli.runOnToken(["key", "export", "--key", "api-user-1", "--format", "pem", "--out", "pub.pem"])
        #expect(pem.status == 0, "\(pem.standardError)")
        let digest = try Subprocess.run("sh", ["-c", "openssl pkey -pubin -in pub.pem -outform DER | sha256sum"], workingDirectory: cli.files)
        #expect(digest.standardOutput.hasPrefix(fingerprint))

        let jwk = try cli.runOnToken(["key", "export", "--key", "api-user-1", "--format", "jwk"])
        let jwkObject = try #require(try jwk.json() as? [String: Any])
        #expect(jwkObject["kty"] as? String == "RSA")
        #expect(jwkObject["e"] as? String == "AQAB")
        #expect(jwkObject["kid"] as? String == fingerprint)

        let csr = try cli.runOnToken(["csr", "--key", "api-user-1", "--cn", "John_the_API_Guy", "--o", "Acme Corp",
                                      "--ou", "API Team", "--c", "US", "--st", "NY", "--l", "New York",
                                      "--out", "api_user.csr", "--json"])
        #expect(csr.status == 0, "\(csr.standardError)")
        let report = try #require(try csr.json() as? [String: Any])
        #expect(report["verified"] as? Bool == true)
        #expect((report["key"] as? [String: Any])?["fingerprintSHA256"] as? String == fingerprint)

        let verify = try Subprocess.run("openssl", ["req", "-in", "api_user.csr", "-verify", "-noout", "-subject", "-nameopt", "RFC2253"], workingDirectory: cli.files)
        #expect(verify.status == 0)
        #expect(verify.standardError.contains("verify OK") || verify.standardOutput.contains("verify OK"))
        #expect(verify.standardOutput.contains("CN=John_the_API_Guy,OU=API Team,O=Acme Corp,L=New York,ST=NY,C=US"))
        let csrKey = try Subprocess.run("sh", ["-c", "openssl req -in api_user.csr -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum"], workingDirectory: cli.files)
        #expect(csrKey.standardOutput.hasPrefix(fingerprint))

        let attributesOnDisk = try FileManager.default.attributesOfItem(atPath: cli.files + "/api_user.csr")
        #expect((attributesOnDisk[.posixPermissions] as? Int) == 0o644)
    }

    @Test func csrToStandardOutput() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let csr = try cli.runOnToken(["csr", "--key", "k", "--o", "Acme Corp", "--out", "-"])
        #expect(csr.status == 0, "\(csr.standardError)")
        #expect(csr.standardOutput.hasPrefix("-----BEGIN CERTIFICATE REQUEST-----"))
        let verify = try Subprocess.run("openssl", ["req", "-verify", "-noout"], input: csr.standardOutputData)
        #expect(verify.status == 0)
    }

    @Test func helpShowsExamplesAndThereIsNoPINFlag() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        for command in [["key", "generate"], ["csr"], ["token", "list"], ["key", "show"]] {
            let help = try cli.run(command + ["--help"], module: nil)
            #expect(help.status == 0)
            #expect(help.standardOutput.contains("Examples:"), "\(command) --help has examples")
        }
        let generateHelp = try cli.run(["key", "generate", "--help"], module: nil)
        #expect(generateHelp.standardOutput.contains("--pin-source"))
        #expect(!generateHelp.standardOutput.contains("--pin "))

        let pinFlag = try cli.run(["key", "generate", "--token", "fb", "--key", "k", "--pin", "1234"])
        #expect(pinFlag.status == 2)
        #expect(pinFlag.standardError.contains("--pin"))
    }

    @Test func versionIsPrinted() throws {
        let result = try Subprocess.run(CLIHarness.binary, ["--version"])
        #expect(result.status == 0)
        #expect(result.standardOutput.split(separator: ".").count == 3)
    }

    @Test func worksThroughP11KitServer() throws {
        let cli = try CLIHarness(label: "remote")
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)

        let server = try P11Kit.Server(cli: cli, token: "remote")
        defer { server.stop() }
        let socket = server.socket

        // The client side sees the token only through the socket: no SoftHSM configuration.
        let client = try #require(P11Kit.clientModule)
        let extra = ["P11_KIT_SERVER_ADDRESS": "unix:path=\(socket)", "SOFTHSM2_CONF": "/nonexistent"]
        let shown = try cli.run(["key", "show", "--token", "remote", "--key", "k", "--pin-source", "env:TEST_HSM_PIN", "--json"],
                                module: client, environment: extra)
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect((try shown.json() as? [String: Any])?["verdict"] as? String == "meets-policy")
        let csr = try cli.run(["csr", "--token", "remote", "--key", "k", "--o", "Acme", "--out", "remote.csr", "--pin-source", "env:TEST_HSM_PIN"],
                              module: client, environment: extra)
        #expect(csr.status == 0, "\(csr.standardError)")
        #expect(try Subprocess.run("openssl", ["req", "-in", "remote.csr", "-verify", "-noout"], workingDirectory: cli.files).status == 0)
    }
}

enum P11Kit {
    /// p11-kit's client module (Debian's multiarch pkcs11 directory).
    static let clientModule: String? = {
        let candidates = ["/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so", "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
                          "/usr/lib/pkcs11/p11-kit-client.so"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }()

    /// `p11-kit server` exporting one SoftHSM token of `cli` on a unix socket.
    final class Server {
        let socket: String
        private let process = Process()

        init(cli: CLIHarness, token: String) throws {
            socket = cli.directory.path + "/p11kit.sock"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["p11-kit", "server", "-f", "--provider", SoftHSM.modulePath, "-n", socket, "pkcs11:token=\(token)"]
            process.environment = cli.environment()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<50 where !FileManager.default.fileExists(atPath: socket) { usleep(100_000) }
            try #require(FileManager.default.fileExists(atPath: socket), "p11-kit server made no socket in 5 s")
        }

        func stop() {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
