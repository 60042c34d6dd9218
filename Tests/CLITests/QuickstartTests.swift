import Foundation
import SoftHSMTestSupport
import Testing

/// docs/quickstart.md runs as written: its `sh` blocks, in order, in one shell, against a
/// throwaway SoftHSM token and the offline stand-in, with only the environment the page itself
/// sets (and the binaries this build made on PATH, for its build step).
@Suite("docs/quickstart.md runs")
struct QuickstartTests {
    private static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The page's `sh` blocks, but those it marks as not run (the build).
    static func runnableBlocks(_ markdown: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        var skipNext = false
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line.hasPrefix("<!-- quickstart-test: skip") {
                skipNext = true
            } else if current == nil, line == "```sh" {
                current = []
            } else if let block = current, line == "```" {
                if !skipNext { blocks.append(block.joined(separator: "\n")) }
                skipNext = false
                current = nil
            } else if current != nil {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test func theQuickstartRunsAsWrittenOffline() throws {
        let page = try String(contentsOf: Self.repository.appendingPathComponent("docs/quickstart.md"), encoding: .utf8)
        let blocks = Self.runnableBlocks(page)
        #expect(blocks.count >= 8, "\(blocks.count) runnable blocks")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("quickstart-\(UUID())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try FileManager.default.createSymbolicLink(at: work.appendingPathComponent("hsm-config"),
                                                   withDestinationURL: Self.repository.appendingPathComponent("hsm-config"))
        let binaries = URL(fileURLWithPath: CLIHarness.binary).deletingLastPathComponent().path
        let script = """
            set -euo pipefail
            trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
            export PATH="\(binaries):$PATH"
            \(blocks.joined(separator: "\n"))
            """
        // Nothing of the caller's: no FIREBLOCKS_HSM_* or SOFTHSM2_CONF, state under the work dir.
        let environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": work.path + "/home",
            "TMPDIR": work.path, "XDG_STATE_HOME": work.path + "/state", "XDG_CONFIG_HOME": work.path + "/config", "LANG": "C.UTF-8",
        ]
        // Bounded: a stand-in that never starts, or a wait that never ends, fails the test.
        let result = try Subprocess.run("/usr/bin/timeout", ["--kill-after=10", "900", "/bin/bash", "-c", script], environment: environment,
                                        workingDirectory: work.path)
        #expect(result.status == 0, "the quickstart failed:\n\(result.standardOutput)\n\(result.standardError)")
        for file in ["api_user.csr", "ci-bot.csr", "pairing.token", "ops-bot.token", "ci-bot-2027.token"] {
            #expect(FileManager.default.fileExists(atPath: work.appendingPathComponent(file).path), "\(file) was not written")
        }
        let mode = (try? FileManager.default.attributesOfItem(atPath: work.appendingPathComponent("pairing.token").path)[.posixPermissions]) as? Int
        #expect(mode == 0o600, "the pairing token is a secret")
        #expect(result.standardOutput.contains("READY"), "\(result.standardOutput)")
    }

    @Test func theBlockReaderSkipsWhatThePageMarks() {
        let page = "<!-- quickstart-test: skip (build) -->\n```sh\nbuild\n```\n```text\nexample\n```\n```sh\nrun 1\nrun 2\n```\n"
        #expect(Self.runnableBlocks(page) == ["run 1\nrun 2"])
    }
}
