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
        #expect(FileManager.default.createFile(atPath: out, contents: nil))
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

    /// A follower of the harness's token, its output and errors in files (a test reads them as
    /// they grow).
    private func follower(_ cli: CLIHarness, _ extra: [String] = []) throws -> (process: Process, out: String, errors: String) {
        let out = cli.files + "/follow-\(UUID().uuidString.prefix(8)).out"
        let errors = out + ".err"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        process.arguments = ["audit", "show", "--follow", "--jsonl", "--interval", "0.1", "--token", cli.label, "--module", SoftHSM.modulePath] + extra
        process.environment = cli.environment()
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errors))
        try process.run()
        return (process, out, errors)
    }

    private func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The log is only ever appended to: a follower that finds it replaced (another inode, even
    /// with the same bytes), removed, cut, or given a line that is not the record in its place
    /// stops with the audit trail's exit code and says which, instead of reading on.
    @Test(arguments: ["replaced", "removed", "cut", "not a record", "out of place"])
    func aFollowStopsWhenTheLogIsNotAppendedTo(change: String) throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let log = try cli.auditLogPath()
        let original = try Data(contentsOf: URL(fileURLWithPath: log))
        let count = original.split(separator: 0x0A).count
        let (process, out, errors) = try follower(cli)
        defer { if process.isRunning { process.terminate() } }
        #expect(CLIHarness.eventually(within: 20) { lines(out).count == count }, "the records already there: \(lines(out))")

        let expected: String
        switch change {
        case "replaced":
            try original.write(to: URL(fileURLWithPath: log + ".new"))
            chmod(log + ".new", 0o600)
            #expect(rename(log + ".new", log) == 0)
            expected = "was replaced while it was read"
        case "removed":
            #expect(unlink(log) == 0)
            expected = "was removed while it was read"
        case "cut":
            let last = try #require(original.dropLast().lastIndex(of: 0x0A))
            #expect(truncate(log, off_t(last + 1)) == 0)
            expected = "became shorter while it was read"
        case "not a record":
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("{\"note\": \"not a record\"}\n".utf8))
            try handle.close()
            expected = "record \(count) of \(log): line \(count) is not an audit record"
        default:
            let first = try #require(original.split(separator: 0x0A).first)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(first) + Data([0x0A]))
            try handle.close()
            expected = "line \(count) has seq 0: records were removed, inserted or reordered"
        }
        #expect(CLIHarness.eventually(within: 20) { !process.isRunning }, "\(change): it went on following")
        process.waitUntilExit()
        let said = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(process.terminationReason == .exit && process.terminationStatus == 11, "\(change): \(process.terminationStatus) \(said)")
        #expect(said.contains(expected), "\(change): \(said)")
        #expect(lines(out).count == count, "\(change): nothing after it was printed: \(lines(out))")
    }

    /// A line that is not a record is an error without --follow too, never skipped.
    @Test func aLineThatIsNotARecordStopsTheShow() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let log = try cli.auditLogPath()
        let count = lines(log).count
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("garbage\n".utf8))
        try handle.close()
        for mode in [["--jsonl"], [], ["--json"]] {
            let shown = try cli.runOnToken(["audit", "show"] + mode)
            #expect(shown.status == 11, "\(mode): \(shown.standardError)")
            #expect(shown.standardError.contains("line \(count) is not an audit record"), "\(mode): \(shown.standardError)")
        }
    }

    /// A reader that leaves (`| head -1`) ends the follow quietly and with success, although
    /// nothing new is written for it to fail on.
    @Test func aReaderThatLeavesEndsTheFollowQuietly() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let script = #"""
            set -o pipefail
            "$0" audit show --follow --jsonl --interval 0.1 --token "$1" --module "$2" 2> "$3" | head -n 1
            echo "status=${PIPESTATUS[0]}"
            """#
        let errors = cli.files + "/head.err"
        let result = try Subprocess.run("timeout", ["60", "bash", "-c", script, CLIHarness.binary, cli.label, SoftHSM.modulePath, errors],
                                        environment: cli.environment(), workingDirectory: cli.files)
        let printed = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(printed.count == 2 && printed.first?.contains("\"seq\":0") == true, "\(printed) \(result.standardError)")
        #expect(printed.last == "status=0", "\(printed)")
        let said = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? "error: unreadable"
        #expect(!said.contains("error") && !said.lowercased().contains("broken pipe"), "quietly: \(said)")
    }

    /// Writes that fail for another reason than a reader leaving (a full disk) are an error,
    /// not silence.
    @Test func aFullOutputIsAnError() throws {
        let cli = try withKeys()
        defer { cli.remove() }
        let result = try Subprocess.run("bash", ["-c", #""$0" audit show --jsonl --token "$1" --module "$2" > /dev/full"#,
                                                 CLIHarness.binary, cli.label, SoftHSM.modulePath],
                                        environment: cli.environment(), workingDirectory: cli.files)
        #expect(result.status == 3, "\(result.standardError)")
        #expect(result.standardError.contains("cannot write the audit records to standard output (No space left on device)"), "\(result.standardError)")
    }

    /// The writer itself: a pipe nobody reads is "the reader left" (false, no signal), seen also
    /// without writing; another failure is thrown.
    @Test func theRecordWriterTellsALeftReaderFromAFailure() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[1]) }
        let output = RecordOutput(descriptor: ends[1])
        #expect(!output.readerLeft)
        #expect(try output.write("first\n"))
        close(ends[0])
        #expect(output.readerLeft)
        #expect(try output.write("second\n") == false)
        let full = open("/dev/full", O_WRONLY)
        defer { close(full) }
        #expect(throws: CommandLineError.self) { try RecordOutput(descriptor: full).write("x\n") }
    }
}
