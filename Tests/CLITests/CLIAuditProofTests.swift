import Foundation
import SoftHSMTestSupport
import Testing
import TransparencyLog

/// Proofs for outside verifiers (`audit proof`), incremental verification from an auditor's
/// checkpoint, and the tiles they are computed from (`audit tiles --rebuild`).
@Suite("Command line: audit proofs and tiles")
struct CLIAuditProofTests {
    /// A token whose log holds a few hundred records (through the proxy's appender), the audit
    /// key's public half in `trusted-audit.pub`, and the checkpoint of that moment saved.
    private func trail(records: Int = 600) throws -> (cli: CLIHarness, saved: String) {
        let cli = try CLIHarness()
        let key = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        try (key["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/trusted-audit.pub", atomically: true, encoding: .utf8)
        let fill = try cli.runOnToken(["bench", "audit-fill", "--records", String(records)])
        guard fill.status == 0 else { throw TestSupportError(fill.standardError) }
        let saved = cli.files + "/saved.checkpoint"
        try cli.runOnToken(["audit", "checkpoint"]).standardOutput.write(toFile: saved, atomically: true, encoding: .utf8)
        return (cli, saved)
    }

    private func checkpoint(_ text: String) throws -> Checkpoint {
        try Checkpoint(noteText: String(text[..<(try #require(text.range(of: "\n\n"))).lowerBound]) + "\n")
    }

    private func tilesPath(_ cli: CLIHarness) throws -> String {
        String(try cli.auditLogPath().dropLast(".jsonl".count)) + ".tiles"
    }

    @Test func anInclusionProofIsAC2SPTlogProofThatSigstoresOwnCodeVerifies() throws {
        let (cli, _) = try trail()
        defer { cli.remove() }
        let text = try cli.runOnToken(["audit", "proof", "--index", "300"])
        #expect(text.status == 0, "\(text.standardError)")
        let proof = try TlogProof(parsing: text.standardOutput)
        let json = try #require(try cli.runOnToken(["audit", "proof", "--index", "300", "--json"]).json() as? [String: Any])
        let record = Array(try #require(Data(base64Encoded: json["recordBase64"] as? String ?? "")))
        let lines = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8).split(separator: "\n")
        #expect(record == Array(lines[300].utf8), "the leaf is the record's exact line")
        #expect(proof.index == 300 && json["tlogProof"] as? String == text.standardOutput)
        #expect(try proof.includes(leaf: record))
        #expect((1...4).contains(json["tilesRead"] as? Int ?? 0), "\(json)")

        // An implementation we did not write: sigstore-python's signed-note and RFC 6962 code.
        guard let sigstore = ProcessInfo.processInfo.environment["FIREBLOCKS_HSM_SIGSTORE_PY"] else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = sigstore
        let verifier = CLIHarness.repository + "/ci/verifiers/sigstore-verify-inclusion.py"
        let origin = try checkpoint(proof.checkpoint.formatted).origin
        func check(_ proofText: String, _ leaf: [UInt8]) throws -> ProcessResult {
            try proofText.write(toFile: cli.files + "/record.tlog-proof", atomically: true, encoding: .utf8)
            try Data(leaf).write(to: URL(fileURLWithPath: cli.files + "/record.json"))
            return try Subprocess.run("python3", [verifier, cli.files + "/record.tlog-proof", cli.files + "/record.json",
                                                  cli.files + "/trusted-audit.pub", origin], environment: environment)
        }
        let verified = try check(text.standardOutput, record)
        #expect(verified.status == 0, "\(verified.standardError)")
        // Another record, or a bent path: refused (so it does check).
        #expect(try check(text.standardOutput, Array(lines[301].utf8)).status == 1)
        var bent = proof.path
        bent[2][0] ^= 1
        #expect(try check(try TlogProof(index: 300, path: bent, checkpoint: proof.checkpoint).formatted, record).status == 1)
    }

    /// The consistency check of docs/auditor-guide.md (its python block after
    /// `check-consistency.py`), run as an auditor would.
    private func runGuidesConsistencyCheck(old: String, new: String, proof: String) throws -> ProcessResult {
        let guide = try String(contentsOfFile: CLIHarness.repository + "/docs/auditor-guide.md", encoding: .utf8)
        let named = try #require(guide.range(of: "check-consistency.py"))
        let script = try #require(guide[named.upperBound...].components(separatedBy: "```python\n").dropFirst().first?
            .components(separatedBy: "```").first)
        let path = NSTemporaryDirectory() + "check-consistency-\(UUID().uuidString).py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Subprocess.run("python3", [path, old, new, proof])
    }

    @Test(.enabled(if: Subprocess.isAvailable("python3")))
    func aConsistencyProofLeadsFromTheSavedCheckpointToTheCurrentOne() throws {
        let (cli, saved) = try trail()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["bench", "audit-fill", "--records", "300"]).status == 0)
        let old = try checkpoint(try String(contentsOfFile: saved, encoding: .utf8))
        let currentText = try cli.runOnToken(["audit", "checkpoint"]).standardOutput
        try currentText.write(toFile: cli.files + "/current.checkpoint", atomically: true, encoding: .utf8)
        let current = try checkpoint(currentText)
        let result = try cli.runOnToken(["audit", "proof", "--consistency", String(old.treeSize)])
        #expect(result.status == 0, "\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines[0] == "old \(old.treeSize) \(Data(old.rootHash).base64EncodedString())")
        #expect(lines[1] == "new \(current.treeSize) \(Data(current.rootHash).base64EncodedString())")
        let proof = try lines.dropFirst(2).map { Array(try #require(Data(base64Encoded: $0))) }
        #expect(MerkleTree.verifyConsistency(oldSize: old.treeSize, newSize: current.treeSize, oldRoot: old.rootHash,
                                             newRoot: current.rootHash, proof: proof))
        try result.standardOutput.write(toFile: cli.files + "/consistency.txt", atomically: true, encoding: .utf8)
        let guide = try runGuidesConsistencyCheck(old: saved, new: cli.files + "/current.checkpoint", proof: cli.files + "/consistency.txt")
        #expect(guide.status == 0, "\(guide.standardOutput)\(guide.standardError)")
        var bent = lines
        bent[3] = Data(proof[1].map { $0 ^ 1 }).base64EncodedString()
        try (bent.joined(separator: "\n") + "\n").write(toFile: cli.files + "/bent.txt", atomically: true, encoding: .utf8)
        #expect(try runGuidesConsistencyCheck(old: saved, new: cli.files + "/current.checkpoint", proof: cli.files + "/bent.txt").status != 0)

        // Between two older sizes, and as JSON.
        let json = try #require(try cli.runOnToken(["audit", "proof", "--consistency", "10", "500", "--json"]).json() as? [String: Any])
        #expect(json["oldSize"] as? Int == 10 && json["newSize"] as? Int == 500 && json["anchoredSize"] as? Int == current.treeSize)
        #expect((json["proof"] as? [String])?.isEmpty == false)
        // Sizes no proof goes between, or past the anchor: refused as input.
        #expect(try cli.runOnToken(["audit", "proof", "--consistency", "500", "10"]).status == 2)
        #expect(try cli.runOnToken(["audit", "proof", "--consistency", "1", String(current.treeSize + 1)]).status == 2)
        #expect(try cli.runOnToken(["audit", "proof", "--index", String(current.treeSize)]).status == 2)
        #expect(try cli.runOnToken(["audit", "proof"]).status == 2)
        #expect(try cli.runOnToken(["audit", "proof", "--index", "1", "--consistency", "1"]).status == 2)
    }

    @Test func verifyFromASavedCheckpointHashesOnlyTheNewRecords() throws {
        let (cli, saved) = try trail()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["bench", "audit-fill", "--records", "200"]).status == 0)
        let old = try checkpoint(try String(contentsOfFile: saved, encoding: .utf8))
        let result = try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved, "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        let report = try #require(try result.json() as? [String: Any])
        let records = try #require(report["records"] as? Int)
        #expect(report["mode"] as? String == "incremental")
        #expect(report["hashedFrom"] as? Int == old.treeSize && report["recordsHashed"] as? Int == records - old.treeSize)
        #expect((report["consistencyProof"] as? [String])?.isEmpty == false)
        let text = try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved])
        #expect(text.standardOutput.contains("checked: records \(old.treeSize)–\(records - 1) hashed"), "\(text.standardOutput)")
        // --full hashes every record, and compares the tiles.
        let full = try #require(try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved, "--full", "--json"]).json() as? [String: Any])
        #expect(full["mode"] as? String == "full" && full["recordsHashed"] as? Int == records)
        #expect((full["tiles"] as? [String: Any])?["checked"] as? Int ?? 0 > 0)
        #expect(try cli.runOnToken(["audit", "verify", "--full"]).status == 2)

        // Without tiles, every record is hashed, and the report says why.
        try FileManager.default.removeItem(atPath: try tilesPath(cli))
        let fallback = try #require(try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved, "--json"]).json() as? [String: Any])
        #expect(fallback["mode"] as? String == "full" && fallback["fallbackReason"] is String)
        #expect((fallback["tiles"] as? [String: Any])?["present"] as? Bool == false)
        // A proof needs them: refused with the way to build them.
        let refused = try cli.runOnToken(["audit", "proof", "--index", "1"])
        #expect(refused.status == 11 && refused.standardError.contains("audit tiles --rebuild"), "\(refused.standardError)")
    }

    @Test func aChangedTileFailsVerificationByNameAndARebuildReplacesIt() throws {
        let (cli, _) = try trail()
        defer { cli.remove() }
        let tile = try tilesPath(cli) + "/tile/0/001"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: tile))
        bytes[100] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: tile))
        let verify = try cli.runOnToken(["audit", "verify"])
        #expect(verify.status == 11, "\(verify.standardError)")
        #expect(verify.standardError.contains(tile) && verify.standardError.contains("audit tiles --rebuild"), "\(verify.standardError)")
        #expect(try cli.runOnToken(["audit", "tiles"]).status == 2)
        let rebuilt = try #require(try cli.runOnToken(["audit", "tiles", "--rebuild", "--json"]).json() as? [String: Any])
        #expect(rebuilt["replaced"] as? [String] == [tile], "\(rebuilt)")
        let again = try cli.runOnToken(["audit", "verify"])
        #expect(again.status == 0 && again.standardOutput.contains("tiles: "), "\(again.standardError)")
        #expect(try cli.runOnToken(["audit", "proof", "--index", "300"]).status == 0)
    }
}
