import Foundation
import SoftHSMTestSupport
import Testing

/// While the audit directory's filesystem has less free than `--audit-min-free`, every command
/// that records refuses before it starts (exit 3, nothing recorded, nothing made), `serve`
/// answers 503 and its /healthz fails, and `doctor` says so. Low space is made here by a
/// threshold over what any disk in use has free (`100%`).
@Suite("Command line: free space on the audit disk")
struct CLIAuditDiskTests {
    private func lines(_ path: String) throws -> Int {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
    }

    @Test func keyGenerationIsRefusedWithExit3AndNothingIsMadeOrRecorded() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let refused = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048", "--audit-min-free", "100%"])
        #expect(refused.status == 3, "\(refused.standardError)")
        let audit = cli.directory.path + "/audit"
        for part in ["the audit directory \(audit) is on a filesystem with", "less than the", "kept free for the audit trail (100 % of the filesystem)",
                     "nothing was done", "free space on that filesystem", "--audit-min-free", "--audit-dir"] {
            #expect(refused.standardError.contains(part), "\(part): \(refused.standardError)")
        }
        let keys = try #require(try cli.runOnToken(["key", "list", "--json"]).json() as? [[String: Any]])
        #expect(keys.isEmpty, "neither the key nor the audit key was made: \(keys)")
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: audit))?.filter { $0.hasSuffix(".jsonl") } ?? []
        #expect(logs.isEmpty, "no record, not even command.failed: \(logs)")
    }

    @Test func theVariableSetsTheThresholdTheFlagWinsAndJWTsAreRefusedBeforeSigning() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let log = try cli.auditLogPath()
        let before = try lines(log)
        let low = ["FIREBLOCKS_HSM_AUDIT_MIN_FREE": "100%"]
        let refused = try cli.runOnToken(["key", "generate", "--key", "k2", "--bits", "2048"], environment: low)
        #expect(refused.status == 3 && refused.standardError.contains("kept free for the audit trail"), "\(refused.standardError)")
        let jwt = try cli.runOnToken(["jwt", "--key", "k", "--api-key", "k", "--path", "/v1/workspace"], environment: low)
        #expect(jwt.status == 3 && jwt.standardError.contains("kept free for the audit trail"), "\(jwt.standardError)")
        #expect(jwt.standardOutput.isEmpty, "no JWT")
        let json = try cli.runOnToken(["key", "generate", "--key", "k2", "--bits", "2048", "--json"], environment: low)
        let error = try #require((try json.json() as? [String: Any])?["error"] as? [String: Any], "\(json.standardOutput)")
        #expect(error["class"] as? String == "io" && error["exitCode"] as? Int == 3, "\(error)")
        #expect(try lines(log) == before, "nothing recorded")
        // The flag wins over the variable; 0 turns the check off.
        let forced = try cli.runOnToken(["key", "generate", "--key", "k2", "--bits", "2048", "--audit-min-free", "0"], environment: low)
        #expect(forced.status == 0, "\(forced.standardError)")
        #expect(try lines(log) > before)
    }

    @Test(arguments: ["12parsecs", "150%", "-1"])
    func aThresholdThatIsNotOneIsAUsageError(value: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048", "--audit-min-free=\(value)"])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("--audit-min-free") && result.standardError.contains("2GiB"), "\(result.standardError)")
        let variable = try cli.runOnToken(["key", "list"], environment: ["FIREBLOCKS_HSM_AUDIT_MIN_FREE": value])
        #expect(variable.status == 2 && variable.standardError.contains("FIREBLOCKS_HSM_AUDIT_MIN_FREE"), "\(variable.standardError)")
    }

    @Test func doctorHasALineForTheAuditDisk() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let healthy = try cli.runOnToken(["doctor"])
        let line = healthy.standardOutput.split(separator: "\n").first { $0.contains("audit disk") }.map(String.init) ?? ""
        #expect(line.hasPrefix("✓") && line.contains("free on the filesystem of") && line.contains("1 GiB or 5 %"), "\(healthy.standardOutput)")
        let low = try cli.runOnToken(["doctor", "--audit-min-free", "100%", "--json"])
        #expect(low.status == 3, "\(low.standardOutput) \(low.standardError)")
        let checks = try #require((try low.json() as? [String: Any])?["checks"] as? [[String: Any]])
        let disk = try #require(checks.first { $0["name"] as? String == "audit disk" })
        #expect(disk["status"] as? String == "failed" && disk["exit"] as? Int == 3, "\(disk)")
        #expect((disk["detail"] as? String)?.contains("serve answers 503") == true, "\(disk)")
    }

    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func serveStartsButRefusesEveryRequestAndItsHealthSaysWhy() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let socket = cli.directory.path + "/run/p.sock"
        // Through the variable: the companion that runs the proxy reads it too.
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "unix:\(socket)",
                                                           "--allow", "GET /v1/management/api_users"] + api,
                                     socket: socket, environment: ["FIREBLOCKS_HSM_AUDIT_MIN_FREE": "100%"])
        func curl(_ path: String) throws -> (status: Int, body: String) {
            let result = try Subprocess.run("curl", ["-sS", "--max-time", "30", "--unix-socket", socket, "-o", "-", "-w", "\n%{http_code}", "http://fb" + path])
            let lines = result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
        let refused = try curl("/v1/management/api_users")
        let health = try curl("/healthz")
        #expect(proxy.terminate() == 0, "\(proxy.output)")
        #expect(refused.status == 503 && refused.body.contains("low on disk space"), "\(refused)")
        #expect(!refused.body.contains(cli.directory.path), "no path for the client")
        #expect(health.status == 503 && health.body.contains("\"audit-disk\""), "\(health)")
        #expect(proxy.output.contains("the audit directory's filesystem is low on space") && proxy.output.contains(cli.directory.path + "/audit"),
                "the operator's log names the directory: \(proxy.output)")
        #expect(!sandbox.logShows("GET /v1/management/api_users", within: 0), "nothing forwarded")
    }
}
