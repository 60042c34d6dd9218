import Foundation
import SoftHSMTestSupport
import Testing

/// Secrets never echoed, hostile input never crashes or forges output, what scripts parse.
@Suite("Command line: secrets, hostile input, machine output")
struct CLITrustTests {
    // MARK: PINs typed in the wrong place

    /// Every place a pin source is read from, given a PIN instead of a source.
    @Test(arguments: [
        (["--pin-source", "env:918273"], [String: String]()),
        (["--pin-source", "env:pin918273"], [:]),
        (["--pin-source", "file:918273"], [:]),
        (["--pin-source", "918273"], [:]),
        (["--pin-source", "1234918273"], [:]),
        ([], ["FIREBLOCKS_HSM_PIN_SOURCE": "918273"]),
        ([], ["FIREBLOCKS_HSM_PIN_SOURCE": "env:x918273"]),
        (["--token", "pkcs11:token=fb?pin-source=918273"], [:]),
        (["--token", "pkcs11:token=fb?pin-source=file:918273"], [:]),
        (["--token", "pkcs11:token=fb?pin-sorce=918273"], [:]),
        (["--token", "pkcs11:token=fb?pin%2Dvalue=918273"], [:]),
        (["--token", "pkcs11:token=fb?pin-value=918273"], [:]),
        (["--token", "pkcs11:token=fb;918273"], [:]),
        (["--token", "pkcs11:token=fb?918273=1"], [:]),
    ])
    func aPINInAPinSourceIsNeverEchoed(arguments: [String], environment: [String: String]) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        var command = ["key", "list"] + arguments
        if !arguments.contains("--token") { command += ["--token", "fb"] }
        for json in [false, true] {
            let result = try cli.run(command + (json ? ["--json"] : []), environment: environment)
            #expect(result.status == 2 || result.status == 5, "\(result.status): \(result.standardError)")
            #expect(!result.standardError.contains("918273"), "\(result.standardError)")
            #expect(!result.standardOutput.contains("918273"), "\(result.standardOutput)")
            // Not even in part.
            #expect(!result.standardError.contains("9182"), "\(result.standardError)")
            #expect(!result.standardError.contains("8273"), "\(result.standardError)")
        }
    }

    @Test func theSOPinSourceIsNotEchoedEither() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["token", "init", "--label", "new", "--so-pin-source", "55501234", "--pin-source", "env:TEST_HSM_PIN"])
        #expect(result.status == 2)
        #expect(!result.standardError.contains("5550"))
        #expect(result.standardError.contains("--so-pin-source"))
    }

    @Test func aProfilesPinSourceIsNotEchoed() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let config = try writeConfig(cli, #"{"profiles": {"default": {"token": "fb", "pinSource": "77712345"}}}"#)
        let result = try cli.run(["key", "list"], environment: ["FIREBLOCKS_HSM_CONFIG": config])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(!result.standardError.contains("7771"))
        #expect(result.standardError.contains("pinSource"))
    }

    // MARK: Module files

    /// A shared object whose constructor leaves a mark: proof of whether it was loaded.
    private func markingModule(_ cli: CLIHarness, name: String = "marking.so") throws -> (path: String, mark: String) {
        let source = cli.files + "/marking.c"
        let mark = cli.files + "/loaded.mark"
        try """
            #include <stdio.h>
            __attribute__((constructor)) static void mark(void) {
                FILE *f = fopen("\(mark)", "w"); if (f) { fputs("loaded", f); fclose(f); }
            }
            """.write(toFile: source, atomically: true, encoding: .utf8)
        let directory = cli.files + "/modules"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let path = directory + "/" + name
        let compiled = try Subprocess.run("cc", ["-shared", "-fPIC", "-o", path, source])
        guard compiled.status == 0 else { throw TestSupportError("cc failed: \(compiled.standardError)") }
        return (path, mark)
    }

    @Test(.enabled(if: Subprocess.isAvailable("cc")), arguments: ["flag", "environment", "profile", "symlink", "directory"])
    func aModuleOthersCouldWriteIsNeverLoaded(route: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let (path, mark) = try markingModule(cli)
        var module = path
        var environment: [String: String] = [:]
        var arguments = ["token", "list"]
        switch route {
        case "directory":
            chmod(path, 0o755)
            chmod(URL(fileURLWithPath: path).deletingLastPathComponent().path, 0o777)
        case "symlink":
            // A safe-looking link to a world-writable file: judged where it leads.
            chmod(path, 0o666)
            module = cli.files + "/link.so"
            try FileManager.default.createSymbolicLink(atPath: module, withDestinationPath: path)
        default:
            chmod(path, 0o666)
        }
        switch route {
        case "environment":
            environment["FIREBLOCKS_HSM_MODULE"] = module
        case "profile":
            environment["FIREBLOCKS_HSM_CONFIG"] = try writeConfig(cli, #"{"profiles": {"default": {"module": "\#(module)", "token": "fb"}}}"#)
            arguments = ["key", "list", "--pin-source", "env:TEST_HSM_PIN"]
        default:
            arguments += ["--module", module]
        }
        let result = try cli.run(arguments, module: nil, environment: environment)
        #expect(result.status == 4, "\(result.standardError)")
        #expect(result.standardError.contains("refusing to load PKCS#11 module"), "\(result.standardError)")
        #expect(result.standardError.contains("writable by group or others"))
        #expect(!FileManager.default.fileExists(atPath: mark), "the module's constructor ran")
    }

    @Test(.enabled(if: Subprocess.isAvailable("cc")))
    func aSafeModuleFileIsLoaded() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let (path, mark) = try markingModule(cli)
        chmod(path, 0o755)
        // Not a PKCS#11 module, but safe to open: it is opened (its constructor runs) and refused.
        let result = try cli.run(["token", "list", "--module", path], module: nil)
        #expect(result.status == 4)
        #expect(result.standardError.contains("is not a PKCS#11 module"), "\(result.standardError)")
        #expect(FileManager.default.fileExists(atPath: mark))
    }

    @Test func aConfigReachedThroughASymlinkInAWorldWritableDirectoryIsRefused() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let config = try writeConfig(cli, #"{"profiles": {"default": {"token": "fb"}}}"#)
        let open = cli.files + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        let link = open + "/config.json"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: config)
        let result = try cli.run(["key", "list", "--pin-source", "env:TEST_HSM_PIN"], environment: ["FIREBLOCKS_HSM_CONFIG": link])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("symlink"))
        // The same file named directly is fine.
        let direct = try cli.run(["key", "list", "--pin-source", "env:TEST_HSM_PIN"], environment: ["FIREBLOCKS_HSM_CONFIG": config])
        #expect(direct.status == 0, "\(direct.standardError)")
    }

    private func writeConfig(_ cli: CLIHarness, _ text: String) throws -> String {
        let directory = cli.directory.path + "/config"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = directory + "/config.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        return path
    }

    // MARK: Input that used to crash

    @Test(arguments: ["http://127.0.0.%C2%BD/v1", "http://127.0.0.½/v1", "http://127.0.0.٣/v1", "http://1٢7.0.0.1/v1",
                      "http://127.0.0.1:99999/v1", "http://[::1/v1", "http://%00/v1"])
    func aHostileBaseURLIsAUsageErrorNotACrash(url: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        for (flags, environment) in [(["--base-url", url], [String: String]()), ([], ["FIREBLOCKS_HSM_BASE_URL": url])] {
            let result = try cli.runOnToken(["api-user", "list", "--key", "admin", "--api-key", "k"] + flags, environment: environment)
            #expect(result.status == 2, "\(url): \(result.status) \(result.standardError)")
            #expect(result.errorLines.count == 1)
        }
    }

    // MARK: What scripts see

    @Test func aFailingCommandWithJSONPrintsOneErrorDocument() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.runOnToken(["key", "show", "--key", "missing", "--json"])
        #expect(result.status == 6)
        let error = try #require((try result.json() as? [String: Any])?["error"] as? [String: Any])
        #expect(error["class"] as? String == "key")
        #expect(error["exitCode"] as? Int == 6)
        #expect((error["message"] as? String)?.contains("no private key 'missing'") == true)

        // A usage error caught by the parser is reported the same way.
        let usage = try cli.run(["key", "list", "--json", "--no-such-flag"])
        #expect(usage.status == 2)
        #expect(((try usage.json() as? [String: Any])?["error"] as? [String: Any])?["class"] as? String == "usage")

        // A PKCS#11 failure names the return value.
        let wrong = try cli.run(["key", "list", "--token", "fb", "--pin-source", "env:WRONG", "--json"], environment: ["WRONG": "0000"])
        #expect(wrong.status == 5)
        let pinError = try #require((try wrong.json() as? [String: Any])?["error"] as? [String: Any])
        #expect(pinError["class"] as? String == "pin")
    }

    @Test func jwtNeedsNoEnvironmentForAWholePath() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        let jwt = try cli.runOnToken(["jwt", "--key", "admin", "--api-key", "3f1c", "--path", "/v1/vault/accounts_paged?limit=1"])
        #expect(jwt.status == 0, "\(jwt.standardError)")
        let parts = jwt.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".")
        #expect(parts.count == 3)
        let payload = try #require(Data(base64Encoded: String(parts[1]).padding(toLength: (parts[1].count + 3) / 4 * 4, withPad: "=", startingAt: 0)
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")))
        let claims = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        #expect(claims["uri"] as? String == "/v1/vault/accounts_paged?limit=1")

        let partial = try cli.runOnToken(["jwt", "--key", "admin", "--api-key", "3f1c", "--path", "/workspace"])
        #expect(partial.status == 2)
        #expect(partial.standardError.contains("/v1/"))
    }

    @Test func aMisspeltURIAttributeGetsTheNearestKnownOne() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb?pin-sorce=file:/run/pin"])
        #expect(result.status == 2)
        #expect(result.standardError.contains("unknown query attribute 'pin-sorce'"), "\(result.standardError)")
        #expect(result.standardError.contains("did you mean 'pin-source'?"))
        #expect(!result.standardError.contains("/run/pin"))
    }

    @Test func aMistypedSubcommandIsNamed() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "generat", "--key", "x"], module: nil)
        #expect(result.status == 2)
        #expect(result.standardError.contains("unknown subcommand 'generat'"), "\(result.standardError)")
        #expect(result.standardError.contains("Did you mean 'generate'?"))
        #expect(!result.standardError.contains("Unknown option"))
    }

    @Test func keyGenerateOnATakenLabelRefusesBeforeAnnouncingAnything() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "taken", "--bits", "2048"]).status == 0)
        let again = try cli.runOnToken(["key", "generate", "--key", "taken", "--bits", "2048"])
        #expect(again.status == 6)
        #expect(!again.standardError.contains("Generating"), "\(again.standardError)")
    }

    @Test func choicesAreCaseInsensitive() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let pem = try cli.runOnToken(["key", "export", "--key", "k", "--format", "PEM"])
        #expect(pem.status == 0, "\(pem.standardError)")
        #expect(pem.standardOutput.hasPrefix("-----BEGIN PUBLIC KEY-----"))
    }

    /// Every example in every command's help stays on its own unbroken lines at 80 columns.
    @Test func helpExamplesAreNotWrappedMidArgument() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let commands = [[], ["token", "list"], ["token", "init"], ["key", "generate"], ["key", "show"], ["key", "list"],
                        ["key", "export"], ["key", "delete"], ["csr"], ["jwt"], ["request"], ["api-user", "create"],
                        ["api-user", "list"], ["onboard"], ["audit", "init"], ["audit", "show"], ["audit", "checkpoint"],
                        ["audit", "verify"], ["audit", "proof"], ["audit", "tiles"], ["audit", "repair"], ["evidence", "verify"],
                        ["serve"], ["bench", "sign"],
                        ["bench", "proxy"], ["api-user", "show"], ["api-user", "wait"], ["api-user", "pairing-token"]]
        for command in commands {
            let help = try cli.run(command + ["--help"], module: nil, environment: ["COLUMNS": "80"])
            #expect(help.status == 0)
            let lines = help.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            for (index, line) in lines.enumerated() where line.hasPrefix("  fireblocks-hsm ") {
                // An example starts at two spaces; its continuations end the line before in '\'
                // and are indented deeper. ArgumentParser wraps at the last space before column
                // 80, so a wrapped example shows as a line that is not one of these.
                var current = index
                while lines[current].hasSuffix("\\"), current + 1 < lines.count {
                    current += 1
                    #expect(lines[current].hasPrefix("      "), "\(command): continuation not indented: \(lines[current].debugDescription)")
                }
                let quotes = (index...current).map { lines[$0].filter { $0 == "\"" }.count }.reduce(0, +)
                #expect(quotes % 2 == 0, "\(command): an example's quotes are split by a wrapped line: \(line)")
                if current + 1 < lines.count {
                    let after = lines[current + 1]
                    #expect(after.isEmpty || after.hasPrefix("  fireblocks-hsm ") || after.hasPrefix("  curl ")
                                || after.hasPrefix("  SOFTHSM2_CONF") || after.hasPrefix("  #"),
                            "\(command): an example runs on without '\\': \(after.debugDescription)")
                }
            }
        }
    }
}

/// A server that answers every request with hostile text: escapes that would retitle the
/// terminal and forge a line, and a 10 MB message.
final class HostileServer {
    let process = Process()
    let baseURL: String

    init(directory: String) throws {
        let script = directory + "/hostile.py"
        try #"""
            import http.server, json, sys
            class Handler(http.server.BaseHTTPRequestHandler):
                def answer(self):
                    hostile = "\x1b]0;pwned\x07\x1b[2K\rfireblocks-hsm: forged line\n"
                    if self.path.endswith("/management/api_users"):
                        status = 200
                        body = json.dumps({"users": [{"id": "u-1", "name": hostile + "bot", "role": "SIGNER",
                                                      "enabled": True, "status": "READY\u202e", "userType": "API"}]}).encode()
                    else:
                        status = 400
                        body = json.dumps({"message": hostile + "A" * (10 * 1024 * 1024), "code": -1}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Request-ID", "req-hostile")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                do_GET = answer
                do_POST = answer
                def log_message(self, *args): pass
            server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(server.server_address[1]))
            import os
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            server.serve_forever()
            """#.write(toFile: script, atomically: true, encoding: .utf8)
        let portFile = directory + "/hostile.port"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, portFile]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text: String?
        for _ in 0..<200 where text == nil {
            text = try? String(contentsOfFile: portFile, encoding: .utf8)
            if text == nil { usleep(50_000) }
        }
        guard let port = text.flatMap({ Int($0) }) else {
            process.terminate()
            throw TestSupportError("the hostile server did not start")
        }
        baseURL = "http://127.0.0.1:\(port)/v1"
    }

    func stop() {
        // SIGKILL: a signal the test runner ignores is ignored by its children too.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

@Suite("Command line: server text")
struct CLIServerTextTests {
    @Test(.enabled(if: Subprocess.isAvailable("python3")))
    func hostileServerTextIsEscapedAndCutButExactInJSON() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        let server = try HostileServer(directory: cli.files)
        defer { server.stop() }
        let arguments = ["request", "GET", "/v1/workspace", "--key", "admin", "--api-key", "k", "--base-url", server.baseURL]

        let text = try cli.runOnToken(arguments)
        #expect(text.status == 9, "\(text.standardError.prefix(500))")
        #expect(!text.standardError.contains("\u{1B}"), "an escape reached the terminal")
        #expect(!text.standardError.contains("\u{07}"))
        #expect(text.errorLines.count == 1, "a line was forged: \(text.standardError.prefix(500))")
        #expect(text.standardError.utf8.count < 10_000, "the 10 MB message was printed whole")
        #expect(text.standardError.contains("more characters not shown"))

        let json = try cli.runOnToken(arguments + ["--json"])
        #expect(json.status == 9)
        let error = try #require((try json.json() as? [String: Any])?["error"] as? [String: Any])
        #expect(error["httpStatus"] as? Int == 400)
        let body = try #require(error["responseBody"] as? String)
        #expect(body.utf8.count > 10 * 1024 * 1024, "JSON carries the exact body")
        #expect((error["message"] as? String)?.contains("\u{1B}]0;pwned") == true)

        // User names from the API, in a table.
        let list = try cli.runOnToken(["api-user", "list", "--key", "admin", "--api-key", "k", "--base-url", server.baseURL])
        #expect(list.status == 0, "\(list.standardError)")
        #expect(!list.standardOutput.contains("\u{1B}"))
        #expect(!list.standardOutput.contains("\u{202E}"))
        #expect(list.standardOutput.split(separator: "\n").count == 2, "\(list.standardOutput)")
        let listJSON = try cli.runOnToken(["api-user", "list", "--key", "admin", "--api-key", "k", "--base-url", server.baseURL, "--json"])
        let users = try #require(try listJSON.json() as? [[String: Any]])
        #expect((users.first?["name"] as? String)?.hasPrefix("\u{1B}]0;pwned") == true)
    }
}

@Suite("Command line: the stand-in's own errors")
struct CLISandboxErrorTests {
    @Test(arguments: [
        (["--host", "0.0.0.0"], Int32(2), "loopback"),
        (["--host", "127.evil.example"], 2, "loopback"),
        (["--port", "99999"], 2, "--port"),
        (["--delay", "inf"], 2, "--delay"),
        (["--trust", "admin.pub=k:WIZARD"], 2, "--trust"),
        (["--trust", "missing.pub=k:ADMIN"], 3, "missing.pub"),
    ])
    func badFlagsHaveTheirDocumentedClass(arguments: [String], status: Int32, mentioning: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["key", "export", "--key", "admin", "--out", "admin.pub"]).status == 0)
        var command = ["serve", "--port", "0"]
        if !arguments.contains("--trust") { command += ["--trust", "admin.pub=k:ADMIN"] }
        let result = try cli.runSandbox(command + arguments)
        #expect(result.status == status, "\(result.standardError)")
        #expect(result.standardError.contains(mentioning), "\(result.standardError)")
        #expect(!result.standardError.contains("unexpected error"))
        if arguments.contains("WIZARD") { #expect(!result.standardError.contains("--role")) }
    }
}
