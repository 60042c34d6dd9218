import Foundation
import SoftHSMTestSupport
import Testing

/// The audit trail against someone who can write the audit directory but has no PIN: no edit is
/// ever signed over, a missing anchor is a broken trail, repair never cuts what is sealed, and
/// files others could write are refused. Each test failed before the trail trusted only the
/// token's anchor.
@Suite("Command line: the audit trail under attack")
struct CLIAuditAttackTests {
    private func logPath(_ cli: CLIHarness) throws -> String { try cli.auditLogPath() }

    private func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// Rewrites the log in place, as whoever can write the file would.
    private func overwrite(_ path: String, _ lines: [String]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data((lines.joined(separator: "\n") + "\n").utf8))
        try handle.close()
    }

    private func sibling(_ log: String, _ suffix: String) -> String { String(log.dropLast(".jsonl".count)) + suffix }

    /// A token with three keys, each generation sealed.
    private func sealedTrail() throws -> (CLIHarness, String) {
        let cli = try CLIHarness()
        for label in ["a", "b", "c"] {
            let result = try cli.runOnToken(["key", "generate", "--key", label, "--bits", "2048"])
            guard result.status == 0 else { throw TestSupportError(result.standardError) }
        }
        return (cli, try logPath(cli))
    }

    private func keyLabels(_ cli: CLIHarness) throws -> [String] {
        try #require(try cli.runOnToken(["key", "list", "--json"]).json() as? [[String: Any]]).compactMap { $0["label"] as? String }
    }

    private func checkpointObjects(_ cli: CLIHarness) throws -> String {
        try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--login", "--pin", "env:TEST_HSM_PIN",
                                           "--list-objects", "--type", "data"], environment: cli.environment()).standardOutput
    }

    @Test(arguments: ["edit", "delete-and-renumber", "cut"])
    func anEditWithTheCacheRemovedIsNeverSignedOver(change: String) throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let anchorBefore = try cli.runOnToken(["audit", "checkpoint"]).standardOutput
        var text = try lines(log)
        switch change {
        case "edit":
            text[1] = text[1].replacingOccurrences(of: "\"label\":\"a\"", with: "\"label\":\"z\"")
            try #require(text[1].contains("\"label\":\"z\""))
        case "delete-and-renumber":
            text.remove(at: 2)
            for index in 2..<text.count {
                text[index] = text[index].replacingOccurrences(of: "\"seq\":\(index + 1),", with: "\"seq\":\(index),")
            }
        default:
            text.removeLast()
        }
        try overwrite(log, text)
        try FileManager.default.removeItem(atPath: sibling(log, ".tree"))

        let next = try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"])
        #expect(next.status == 11, "\(change): \(next.standardError)")
        #expect(!(try keyLabels(cli)).contains("d"), "\(change): a key was made although its record could not be")
        #expect(try cli.runOnToken(["jwt", "--key", "a", "--api-key", "k", "--path", "/v1/x"]).status == 11)
        #expect(try cli.runOnToken(["audit", "checkpoint"]).standardOutput == anchorBefore, "\(change): the anchor moved")
        let verify = try cli.runOnToken(["audit", "verify"])
        #expect(verify.status == 11, "\(change): \(verify.standardError)")
    }

    @Test func anOlderLogWithItsOlderCheckpointPutBackIsRefused() throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let olderLog = try Data(contentsOf: URL(fileURLWithPath: log))
        let olderCheckpoint = try Data(contentsOf: URL(fileURLWithPath: sibling(log, ".checkpoint")))
        #expect(try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"]).status == 0)
        try olderLog.write(to: URL(fileURLWithPath: log))
        try olderCheckpoint.write(to: URL(fileURLWithPath: sibling(log, ".checkpoint")))
        try FileManager.default.removeItem(atPath: sibling(log, ".tree"))
        let next = try cli.runOnToken(["jwt", "--key", "a", "--api-key", "k", "--path", "/v1/x"])
        #expect(next.status == 11, "\(next.standardError)")
        #expect(next.standardOutput.isEmpty)
        #expect(next.standardError.contains("cut off") || next.standardError.contains("older"), "\(next.standardError)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 11)
    }

    @Test func aForgedLogWithAMatchingCacheAndCheckpointFileIsNotSigned() throws {
        // The attacker builds a whole trail on a token of their own and copies its log, cache
        // and checkpoint file over this one's (renamed to this serial): everything agrees with
        // everything but the token's anchor.
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let forger = try CLIHarness()
        defer { forger.remove() }
        for label in ["x", "y", "z"] { #expect(try forger.runOnToken(["key", "generate", "--key", label, "--bits", "2048"]).status == 0) }
        let forgedLog = try logPath(forger)
        let serial = URL(fileURLWithPath: log).deletingPathExtension().lastPathComponent
        let forgedSerial = URL(fileURLWithPath: forgedLog).deletingPathExtension().lastPathComponent
        let forgedLines = try lines(forgedLog).map { $0.replacingOccurrences(of: forgedSerial, with: serial) }
        try overwrite(log, forgedLines)
        // The forger's checkpoint file, and no cache (the next command reads the whole log).
        try Data(contentsOf: URL(fileURLWithPath: sibling(forgedLog, ".checkpoint"))).write(to: URL(fileURLWithPath: sibling(log, ".checkpoint")))
        try FileManager.default.removeItem(atPath: sibling(log, ".tree"))
        let anchorBefore = try cli.runOnToken(["audit", "checkpoint"]).standardOutput
        let next = try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"])
        #expect(next.status == 11, "\(next.standardError)")
        #expect(try cli.runOnToken(["audit", "checkpoint"]).standardOutput == anchorBefore)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 11)
    }

    @Test func aPoisonedCacheBesideAFakeCheckpointFileIsNotTrusted() throws {
        // The cache claims a tree (and the checkpoint file says the same tree) that the token
        // never signed: the cache is compared with the token's anchor, not with the file.
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let cachePath = sibling(log, ".tree")
        var cache = try String(contentsOfFile: cachePath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(cache.count > 4)
        cache[4] = String(repeating: "ab", count: 32)
        try cache.joined(separator: "\n").write(toFile: cachePath, atomically: false, encoding: .utf8)
        var note = try String(contentsOfFile: sibling(log, ".checkpoint"), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        note[2] = Data(repeating: 0xAB, count: 32).base64EncodedString()
        try note.joined(separator: "\n").write(toFile: sibling(log, ".checkpoint"), atomically: false, encoding: .utf8)
        // The forged root is never signed: the file disagrees with the token's anchor, so
        // nothing is appended or signed.
        let anchorBefore = try cli.runOnToken(["audit", "checkpoint"]).standardOutput
        let refused = try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"])
        #expect(refused.status == 11, "\(refused.standardError)")
        #expect(try cli.runOnToken(["audit", "checkpoint"]).standardOutput == anchorBefore)
        // Without the fake file, the poisoned cache alone is not the anchor's tree either: the
        // log is read in full and the true tree signed.
        try FileManager.default.removeItem(atPath: sibling(log, ".checkpoint"))
        #expect(try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"]).status == 0)
        let verify = try cli.runOnToken(["audit", "verify"])
        #expect(verify.status == 0, "\(verify.standardError)")
    }

    @Test(.enabled(if: Subprocess.isAvailable("pkcs11-tool")))
    func aRemovedAnchorIsABrokenTrailUntilAPersonReanchors() throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        #expect(try checkpointObjects(cli).contains("fireblocks-hsm-audit-checkpoint"))
        let deleted = try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--login",
                                                          "--pin", "env:TEST_HSM_PIN", "--delete-object", "--type", "data",
                                                          "--label", "fireblocks-hsm-audit-checkpoint"], environment: cli.environment())
        #expect(deleted.status == 0, "\(deleted.standardError)")
        #expect(!(try checkpointObjects(cli)).contains("fireblocks-hsm-audit-checkpoint"))

        let verify = try cli.runOnToken(["audit", "verify"])
        #expect(verify.status == 11, "\(verify.standardError)")
        #expect(verify.standardError.contains("no anchored checkpoint") && verify.standardError.contains("audit reanchor"), "\(verify.standardError)")
        let blocked = try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"])
        #expect(blocked.status == 11, "\(blocked.standardError)")
        #expect(!(try keyLabels(cli)).contains("d"))

        #expect(try cli.runOnToken(["audit", "reanchor", "--reason", "x"]).status == 2)
        #expect(try cli.runOnToken(["audit", "reanchor", "--accept-current", "--reason", "bad\u{1B}[2J"]).status == 2)
        let reanchored = try cli.runOnToken(["audit", "reanchor", "--accept-current", "--reason", "anchor deleted in INC-1", "--json"])
        #expect(reanchored.status == 0, "\(reanchored.standardError)")
        let report = try #require(try reanchored.json() as? [String: Any])
        #expect(report["previousAnchor"] as? String == "none")
        #expect((report["cannotProve"] as? [String])?.first?.contains("accepted as they are") == true, "\(report)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
        let last = try #require(try lines(log).last)
        #expect(last.contains("\"audit.reanchored\"") && last.contains("INC-1"))
        #expect(try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"]).status == 0)
    }

    @Test func aCheckpointFileAheadOfTheAnchorIsRefused() throws {
        // The file is written after the token's object: a file ahead of it was not written by
        // an append. Here: the anchor of an earlier state put back is simulated by putting a
        // newer file beside an older log state's anchor (a later checkpoint file copied in).
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let checkpoint = sibling(log, ".checkpoint")
        var note = try String(contentsOfFile: checkpoint, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        note[1] = String((Int(note[1]) ?? 0) + 5)
        try note.joined(separator: "\n").write(toFile: checkpoint, atomically: false, encoding: .utf8)
        let next = try cli.runOnToken(["jwt", "--key", "a", "--api-key", "k", "--path", "/v1/x"])
        #expect(next.status == 11, "\(next.standardError)")
        #expect(next.standardError.contains("ahead"), "\(next.standardError)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 11)
    }

    @Test func repairNeverCutsASealedRecord() throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: log))
        bytes.removeLast()  // the final newline of the last sealed record
        try bytes.write(to: URL(fileURLWithPath: log))
        let repair = try cli.runOnToken(["audit", "repair", "--truncate-torn"])
        #expect(repair.status == 11, "\(repair.standardError)")
        #expect(repair.standardError.contains("sealed"), "\(repair.standardError)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: log)) == bytes, "the log was changed")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 11)
    }

    @Test(arguments: ["directory", "log"])
    func aTrailOthersCouldWriteIsRefusedBeforeTheOperation(what: String) throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        let path = what == "directory" ? cli.directory.path + "/audit" : log
        chmod(path, what == "directory" ? 0o777 : 0o666)
        for command in [["key", "generate", "--key", "d", "--bits", "2048"], ["audit", "verify"],
                        ["jwt", "--key", "a", "--api-key", "k", "--path", "/v1/x"]] {
            let result = try cli.runOnToken(command)
            #expect(result.status == 3, "\(command): \(result.standardError)")
            #expect(result.standardError.contains("chmod go-w '\(path)'"), "\(result.standardError)")
        }
        #expect(!(try keyLabels(cli)).contains("d"))
        chmod(path, what == "directory" ? 0o700 : 0o600)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test func aFIFOAtTheLogsPathIsRefusedAtOnce() throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        try FileManager.default.removeItem(atPath: log)
        #expect(mkfifo(log, 0o600) == 0)
        for command in [["key", "generate", "--key", "d", "--bits", "2048"], ["audit", "verify"], ["audit", "show"],
                        ["jwt", "--key", "a", "--api-key", "k", "--path", "/v1/x"]] {
            // Bounded, so that a hang fails the test instead of holding the suite.
            let result = try Subprocess.run("timeout", ["60", CLIHarness.binary] + command
                                            + ["--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath],
                                            environment: cli.environment(), workingDirectory: cli.files)
            #expect(result.status == 3, "\(command): \(result.status) \(result.standardError)")
            #expect(result.standardError.contains("not a regular file"), "\(result.standardError)")
        }
    }

    @Test(.enabled(if: Subprocess.isAvailable("pkcs11-tool")))
    func anAuditKeyThatFailsThePolicyIsRefusedBeforeAnyOtherKeyIsMade() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // Made elsewhere, under the audit key's label, with decrypt and derive allowed.
        let made = try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--login",
                                                       "--pin", "env:TEST_HSM_PIN", "--keypairgen", "--key-type", "EC:prime256v1",
                                                       "--label", "fireblocks-hsm-audit", "--usage-sign", "--usage-decrypt", "--usage-derive"],
                                      environment: cli.environment())
        #expect(made.status == 0, "\(made.standardError)")
        let generate = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"])
        #expect(generate.status == 7, "\(generate.standardError)")
        #expect(generate.standardError.contains("fails the audit key policy"), "\(generate.standardError)")
        let objects = try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--login",
                                                          "--pin", "env:TEST_HSM_PIN", "--list-objects"], environment: cli.environment())
        #expect(!objects.standardOutput.contains("label:      k\n"), "\(objects.standardOutput)")
        #expect(try cli.runOnToken(["audit", "init"]).status == 7)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 7)
        #expect(try cli.runOnToken(["jwt", "--key", "k", "--api-key", "k", "--path", "/v1/x"]).status != 0)
    }

    @Test func aRefusedLoginOfAReadOnlyCommandIsRecorded() throws {
        let (cli, log) = try sealedTrail()
        defer { cli.remove() }
        for command in [["key", "show", "--key", "a"], ["key", "list"], ["audit", "verify"], ["audit", "checkpoint"]] {
            let before = try lines(log).count
            let wrong = try cli.run(command + ["--token", cli.label, "--pin-source", "env:WRONG"], environment: ["WRONG": "wrong-27182818"])
            #expect(wrong.status == 5, "\(command): \(wrong.standardError)")
            let added = try lines(log).dropFirst(before)
            #expect(added.count == 1 && added.first?.contains("\"login.failed\"") == true, "\(command): \(added)")
        }
        #expect(!(try String(contentsOfFile: log, encoding: .utf8)).contains("27182818"))
        #expect(try cli.runOnToken(["key", "generate", "--key", "d", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test func theProxyDoesNotStartOverAnEditedLog() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let log = try logPath(cli)
        var text = try lines(log)
        text[1] = text[1].replacingOccurrences(of: "\"label\":\"admin\"", with: "\"label\":\"other\"")
        try overwrite(log, text)
        try FileManager.default.removeItem(atPath: sibling(log, ".tree"))
        let socket = cli.directory.path + "/run/p.sock"
        let result = try Subprocess.run("timeout", ["60", CLIHarness.binary, "serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN",
                                                    "--module", SoftHSM.modulePath, "--key", "admin", "--listen", "unix:\(socket)",
                                                    "--allow", "GET /v1/workspace"] + api,
                                        environment: cli.environment(), workingDirectory: cli.files)
        #expect(result.status == 11, "\(result.status): \(result.standardError)")
        #expect(result.standardError.contains("checkpoint sealed"), "\(result.standardError)")
    }
}

@Suite("Command line: who made which API user")
struct CLIAPIUserRecordTests {
    private func created(_ cli: CLIHarness) throws -> [[String: Any]] {
        try #require(try cli.runOnToken(["audit", "show", "--event", "api-user.created", "--json"]).json() as? [[String: Any]])
    }

    @Test(.enabled(if: Subprocess.isAvailable("openssl")))
    func apiUserCreateRecordsTheUserAndRefusesAKeyInAFileUnlessTold() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "bot", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["csr", "--key", "bot", "--o", "Acme", "--out", "bot.csr"]).status == 0)
        let made = try cli.runOnToken(["api-user", "create", "--key", "admin", "--name", "bot", "--role", "SIGNER", "--csr", "bot.csr"] + api)
        #expect(made.status == 0, "\(made.standardError)")
        let first = try #require(try created(cli).last)
        let facts = try #require(first["facts"] as? [String: Any])
        #expect(facts["name"] as? String == "bot" && facts["role"] as? String == "SIGNER")
        #expect((facts["keyOnToken"] as? [String: Any])?["label"] as? String == "bot", "\(facts)")
        #expect((facts["csrSHA256"] as? String)?.count == 64 && (facts["spkiSHA256"] as? String)?.count == 64)
        #expect((facts["apiUserID"] as? String)?.isEmpty == false, "\(facts)")

        // Fireblocks' own recipe: the key in a file. Refused before anything is sent.
        let recipe = try Subprocess.run("openssl", ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "file.key", "-subj", "/CN=filebot",
                                                     "-out", "file.csr"], workingDirectory: cli.files)
        #expect(recipe.status == 0, "\(recipe.standardError)")
        let create = ["api-user", "create", "--key", "admin", "--name", "filebot", "--role", "VIEWER", "--csr", "file.csr"] + api
        let refused = try cli.runOnToken(create)
        #expect(refused.status == 6, "\(refused.standardError)")
        #expect(refused.standardError.contains("not on token") && refused.standardError.contains("--allow-key-off-token"), "\(refused.standardError)")
        #expect(((try sandbox.state()["users"] as? [[String: Any]]) ?? []).allSatisfy { $0["name"] as? String != "filebot" })
        let allowed = try cli.runOnToken(create + ["--allow-key-off-token"])
        #expect(allowed.status == 0, "\(allowed.standardError)")
        let second = try #require(try created(cli).last?["facts"] as? [String: Any])
        #expect(second["name"] as? String == "filebot")
        #expect(second["keyOnToken"] as? String == "not on this token")
        #expect(second["allowKeyOffToken"] as? Bool == true)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func aCreationThroughTheProxyIsRecordedFromWhatItSigned() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "bot", "--bits", "2048"]).status == 0)
        let csr = try cli.runOnToken(["csr", "--key", "bot", "--o", "Acme", "--out", "-"]).standardOutput
        let socket = cli.directory.path + "/run/p.sock"
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "unix:\(socket)",
                                                           "--allow", "POST /v1/management/api_users"] + api, socket: socket)
        let body = try JSONSerialization.data(withJSONObject: ["name": "proxied-bot", "role": "SIGNER", "csrPem": csr])
        try body.write(to: URL(fileURLWithPath: cli.files + "/body.json"))
        let posted = try Subprocess.run("curl", ["-sS", "--max-time", "30", "--unix-socket", socket, "-o", "/dev/null", "-w", "%{http_code}",
                                                 "-H", "Content-Type: application/json", "--data-binary", "@" + cli.files + "/body.json",
                                                 "http://fb/v1/management/api_users"])
        #expect(posted.standardOutput.hasPrefix("2"), "\(posted.standardOutput) \(posted.standardError)")
        #expect(proxy.terminate() == 0, "\(proxy.output)")
        let facts = try #require(try created(cli).last?["facts"] as? [String: Any])
        #expect(facts["name"] as? String == "proxied-bot" && facts["via"] as? String == "serve", "\(facts)")
        #expect((facts["keyOnToken"] as? [String: Any])?["label"] as? String == "bot", "\(facts)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }
}
