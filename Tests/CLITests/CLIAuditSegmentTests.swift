import Foundation
import SoftHSMTestSupport
import Testing
import TransparencyLog

/// `audit segment` (a one-file log cut in place) and `audit archive` (sealed segments moved
/// elsewhere, recorded), as an operator runs them: every root, checkpoint and proof stays valid.
@Suite("Command line: audit segments and archival")
struct CLIAuditSegmentTests {
    private let every = ["FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS": "64"]

    private func checkpoint(_ text: String) throws -> Checkpoint {
        try Checkpoint(noteText: String(text[..<(try #require(text.range(of: "\n\n"))).lowerBound]) + "\n")
    }

    @Test func aLogIsCutArchivedAndPutBackWithEveryRootKept() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let key = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        try (key["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/trusted-audit.pub", atomically: true, encoding: .utf8)
        // Written as before segments: one file.
        let fill = try cli.runOnToken(["bench", "audit-fill", "--records", "600"])
        #expect(fill.status == 0, "\(fill.standardError)")
        let logPath = try cli.auditLogPath()
        let segments = String(logPath.dropLast(".jsonl".count)) + ".segments"
        let saved = cli.files + "/saved.checkpoint"
        try cli.runOnToken(["audit", "checkpoint"]).standardOutput.write(toFile: saved, atomically: true, encoding: .utf8)
        let before = try checkpoint(try String(contentsOfFile: saved, encoding: .utf8))
        let lines = try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map(String.init)

        // Cut in place.
        let cut = try #require(try cli.runOnToken(["audit", "segment", "--json"], environment: every).json() as? [String: Any])
        #expect(cut["segmentsWritten"] as? Int == 9 && cut["records"] as? Int == 601 && cut["activeRecords"] as? Int == 25, "\(cut)")
        let files = try FileManager.default.contentsOfDirectory(atPath: segments).sorted()
        #expect(files.first == "000000000000-64.jsonl" && files.last == "000000000512-64.jsonl" && files.count == 9)
        // The records are the same bytes, in the same order.
        var joined = ""
        for file in files { joined += try String(contentsOfFile: segments + "/" + file, encoding: .utf8) }
        let active = try String(contentsOfFile: logPath, encoding: .utf8)
        let same = (joined + active).split(separator: "\n").prefix(lines.count).map(String.init) == lines
        #expect(same, "the segments and the active file hold the log's lines as they were")
        // The auditor's saved checkpoint is still a prefix of the token's tree, proven incrementally.
        let incremental = try #require(try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved, "--json"], environment: every).json() as? [String: Any])
        #expect(incremental["mode"] as? String == "incremental" && incremental["hashedFrom"] as? Int == before.treeSize, "\(incremental)")

        // Archived: nothing is older than tomorrow.
        let tomorrow = Date().addingTimeInterval(2 * 86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
        let archive = cli.files + "/archive"
        let archived = try #require(try cli.runOnToken(["audit", "archive", "--before", tomorrow, "--to", archive, "--json"], environment: every).json() as? [String: Any])
        let moved = try #require(archived["segments"] as? [[String: Any]])
        #expect(moved.count == 9, "\(archived)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: archive).count == 9)
        #expect(try FileManager.default.contentsOfDirectory(atPath: segments).allSatisfy { $0.hasSuffix(".archived") })
        // The digest recorded is an outside SHA-256 of the file that left.
        let first = try #require(moved.first)
        let sum = try Subprocess.run("sha256sum", [archive + "/" + (first["file"] as? String ?? "")])
        #expect(sum.standardOutput.hasPrefix((first["sha256"] as? String ?? "-") + " "), "\(sum.standardOutput)")
        // …and the record that says so is in the log, sealed.
        let shown = try cli.runOnToken(["audit", "show", "--event", "audit.archived", "--json"], environment: every)
        #expect(shown.status == 0 && shown.standardOutput.contains(first["sha256"] as? String ?? "-"), "\(shown.standardError)")
        #expect(shown.standardError.contains("records 0–63 are archived (not shown)"), "\(shown.standardError)")

        // Verify: the tree is intact, and says which records it did not read.
        let verified = try cli.runOnToken(["audit", "verify"], environment: every)
        #expect(verified.status == 0, "\(verified.standardError)")
        #expect(verified.standardOutput.contains("archived records 0–63: not read (moved to \(archive)/"), "\(verified.standardOutput)")
        #expect(verified.standardOutput.contains("checked: 27 records hashed; the other 576 are archived"), "\(verified.standardOutput)")
        // A proof of a record still here verifies with code we did not write; one archived says where it went.
        let proof = try cli.runOnToken(["audit", "proof", "--index", "590"], environment: every)
        #expect(proof.status == 0, "\(proof.standardError)")
        #expect(try TlogProof(parsing: proof.standardOutput).includes(leaf: Array(lines[590].utf8)))
        if let sigstore = ProcessInfo.processInfo.environment["FIREBLOCKS_HSM_SIGSTORE_PY"] {
            var environment = ProcessInfo.processInfo.environment
            environment["PYTHONPATH"] = sigstore
            try proof.standardOutput.write(toFile: cli.files + "/record.tlog-proof", atomically: true, encoding: .utf8)
            try Data(lines[590].utf8).write(to: URL(fileURLWithPath: cli.files + "/record.json"))
            let origin = try checkpoint(try TlogProof(parsing: proof.standardOutput).checkpoint.formatted).origin
            let outside = try Subprocess.run("python3", [CLIHarness.repository + "/ci/verifiers/sigstore-verify-inclusion.py", cli.files + "/record.tlog-proof",
                                                         cli.files + "/record.json", cli.files + "/trusted-audit.pub", origin], environment: environment)
            #expect(outside.status == 0, "\(outside.standardError)")
        }
        let away = try cli.runOnToken(["audit", "proof", "--index", "100"], environment: every)
        #expect(away.status != 0 && away.standardError.contains("records 64–127 are archived"), "\(away.standardError)")

        // Put back: read, and checked to be the file archived.
        let second = try #require(moved.dropFirst().first)
        try FileManager.default.copyItem(atPath: archive + "/" + (second["file"] as? String ?? ""), toPath: segments + "/000000000064-64.jsonl")
        let back = try cli.runOnToken(["audit", "verify"], environment: every)
        #expect(back.status == 0 && back.standardOutput.contains("archived records 64–127: put back and read"), "\(back.standardOutput)\(back.standardError)")
        #expect(try cli.runOnToken(["audit", "proof", "--index", "100"], environment: every).status == 0)
        // A different file put back in its place is refused.
        try FileManager.default.removeItem(atPath: segments + "/000000000064-64.jsonl")
        let other = try String(contentsOfFile: archive + "/" + (second["file"] as? String ?? ""), encoding: .utf8).replacingOccurrences(of: "{", with: "{ ")
        try other.write(toFile: segments + "/000000000064-64.jsonl", atomically: true, encoding: .utf8)
        let wrong = try cli.runOnToken(["audit", "verify"], environment: every)
        #expect(wrong.status == 11, "\(wrong.standardOutput)\(wrong.standardError)")
        try FileManager.default.removeItem(atPath: segments + "/000000000064-64.jsonl")

        // A segment count that is none is a usage error, not 2^20 in silence.
        for value in ["16k", "0", " 64", "8", "2147483648"] {
            let refused = try cli.runOnToken(["audit", "verify"], environment: ["FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS": value])
            #expect(refused.status == 2 && refused.standardError.contains("FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS"), "\(value): \(refused.standardError)")
        }
        // Usage: a date that is none, and no --to.
        #expect(try cli.runOnToken(["audit", "archive", "--before", "soon", "--to", archive]).status == 2)
        #expect(try cli.runOnToken(["audit", "archive", "--before", "90d"]).status == 2)
    }
}
