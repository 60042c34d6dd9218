import AuditTrail
@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// `audit show` for people and for a SIEM: the 80-column table, the filters, JSON Lines exactly
/// as the log holds them, and following the log until a signal.
@Suite("Command line: audit show")
struct CLIAuditShowTests {
    private func withKeys() throws -> CLIHarness {
        let cli = try CLIHarness()
        for key in ["alpha", "beta", "a-label-much-longer-than-its-column"] {
            let generated = try cli.runOnToken(["key", "generate", "--key", key, "--bits", "2048"])
            guard generated.status == 0 else { throw TestSupportError(generated.standardError) }
        }
        let csr = try cli.runOnToken(["csr", "--key", "alpha", "--o", "Acme", "--out", "alpha.csr"])
        guard csr.status == 0 else { throw TestSupportError(csr.standardError) }
        return cli
    }

    private func events(_ result: ProcessResult) throws -> [[String: Any]] {
        try #require(try result.json() as? [[String: Any]], "\(result.standardError)")
    }

    @Test func theTableFitsEightyColumns() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let shown = try cli.runOnToken(["audit", "show"])
        #expect(shown.status == 0, "\(shown.standardError)")
        let lines = shown.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("TIME (UTC)") == true, "\(lines)")
        #expect(lines.count >= 5)
        for line in lines { #expect(line.count <= 80, "\(line.count) columns: \(line)") }
        #expect(lines.contains { $0.contains("key.generated") && $0.contains("alpha") && $0.hasSuffix("ok") })
        #expect(lines.contains { $0.contains("csr.created") && $0.contains("alpha") })
        #expect(lines.contains { $0.contains("a-label-muc…") }, "a long cell is cut with …: \(lines)")
    }

    /// A record's text is anyone's (a log written by another tool, a user name from the API):
    /// control characters are shown escaped, and the row still fits.
    @Test func hostileRecordTextIsEscapedInTheTable() throws {
        let json = #"{"seq":7,"time":"2026-12-06T23:10:11Z","actor":{"user":"op","uid":1000,"host":"h"},"tool":{"name":"t","version":"1"},"event":"api-user.created\u001b]0;pwned\u0007","outcome":{"result":"ok"},"token":{"serial":"s","label":"fb"},"facts":{"label":"evil\u001b[31mred","name":"\u202Egnp.exe"}}"#
        let record = try JSONDecoder().decode(AuditRecord.self, from: Data(json.utf8))
        let row = AuditTable.row(record)
        #expect(!row.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E }, "\(row.debugDescription)")
        #expect(row.contains("\\u{1b}"), "\(row)")
        #expect(row.count <= 80 && row.hasPrefix("2026-12-06 23:10:11 "), "\(row)")
        #expect(AuditTable.header.count <= 80)
    }

    @Test func filtersCombine() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let alpha = try events(try cli.runOnToken(["audit", "show", "--key", "alpha", "--json"]))
        #expect(Set(alpha.compactMap { $0["event"] as? String }) == ["key.generated", "csr.created"], "\(alpha)")
        let generated = try events(try cli.runOnToken(["audit", "show", "--event", "key.*", "--json"]))
        #expect(generated.count == 3 && generated.allSatisfy { ($0["event"] as? String)?.hasPrefix("key.") == true })
        let both = try events(try cli.runOnToken(["audit", "show", "--event", "csr.created", "--event", "audit.key-created", "--json"]))
        #expect(Set(both.compactMap { $0["event"] as? String }) == ["csr.created", "audit.key-created"])
        let csrOfBeta = try events(try cli.runOnToken(["audit", "show", "--event", "csr.created", "--key", "beta", "--json"]))
        #expect(csrOfBeta.isEmpty)
        let all = try events(try cli.runOnToken(["audit", "show", "--json"]))
        let me = try #require((all.first?["actor"] as? [String: Any])?["user"] as? String)
        #expect(try events(try cli.runOnToken(["audit", "show", "--user", me, "--json"])).count >= 5)
        #expect(try events(try cli.runOnToken(["audit", "show", "--user", "nobody-\(UUID().uuidString)", "--json"])).isEmpty)
        #expect(try events(try cli.runOnToken(["audit", "show", "--until", "2000-01-01", "--json"])).isEmpty)
        #expect(try events(try cli.runOnToken(["audit", "show", "--since", "1h", "--json"])).count >= 5)
        #expect(try events(try cli.runOnToken(["audit", "show", "--since", "0s", "--json"])).isEmpty)
        for bad in [["--since", "yesterday"], ["--until", "2026-11-25T00:00:00Z"], ["--json", "--jsonl"], ["--follow", "--json"]] {
            #expect(try cli.runOnToken(["audit", "show"] + bad).status == 2, "\(bad)")
        }
    }

    @Test func jsonLinesAreTheLogsLinesUnchanged() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let log = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8).split(separator: "\n").map(String.init)
        let all = try cli.runOnToken(["audit", "show", "--jsonl"])
        #expect(all.status == 0, "\(all.standardError)")
        #expect(all.standardOutput.split(separator: "\n").map(String.init) == log)
        #expect(all.standardOutput.hasSuffix("\n"))
        let filtered = try cli.runOnToken(["audit", "show", "--jsonl", "--key", "beta"]).standardOutput.split(separator: "\n").map(String.init)
        #expect(!filtered.isEmpty && filtered.allSatisfy { log.contains($0) && $0.contains("\"beta\"") })
    }

    @Test func followPrintsNewRecordsUntilSIGTERM() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let out = cli.files + "/follow.jsonl"
        FileManager.default.createFile(atPath: out, contents: nil)
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        follower.arguments = ["audit", "show", "--follow", "--jsonl", "--event", "key.generated", "--interval", "0.1",
                              "--token", cli.label, "--module", SoftHSM.modulePath]
        follower.environment = cli.environment()
        follower.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        let errors = Pipe()
        follower.standardError = errors
        try follower.run()
        func written() -> [String] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        #expect(CLIHarness.eventually(within: 20) { written().count == 3 }, "the existing records first: \(written())")
        #expect(try cli.runOnToken(["key", "generate", "--key", "gamma", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["csr", "--key", "gamma", "--o", "Acme", "--out", "gamma.csr"]).status == 0)
        #expect(CLIHarness.eventually(within: 20) { written().contains { $0.contains("\"gamma\"") } }, "\(written())")
        #expect(follower.isRunning, "it keeps following")
        follower.terminate()
        follower.waitUntilExit()
        #expect(follower.terminationReason == .exit && follower.terminationStatus == 0,
                "\(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        let lines = written()
        #expect(lines.count == 4, "only key.generated, the csr filtered out: \(lines)")
        let log = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.allSatisfy { log.contains($0) })
    }
}
