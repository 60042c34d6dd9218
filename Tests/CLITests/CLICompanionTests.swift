@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// What uses the network (every `NetworkCommand`: `request`, `api-user`, `onboard`, `serve`,
/// `bench proxy`) runs in the companion executable, `fireblocks-hsm-net`.
@Suite("Command line: the companion executable")
struct CLICompanionTests {
    @Test func serveHelpIsTheCompanionsAndItsErrorsAreTheToolsOwn() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let help = try cli.run(["serve", "--help"], module: nil)
        #expect(help.status == 0)
        #expect(help.standardOutput.contains("--listen <address>"), "\(help.standardOutput)")
        #expect(help.standardOutput.contains("USAGE: fireblocks-hsm serve"))
        let benchHelp = try cli.run(["bench", "proxy", "--help"], module: nil)
        #expect(benchHelp.status == 0 && benchHelp.standardOutput.contains("--workers <n>"), "\(benchHelp.standardOutput)")

        // `help serve` and shell completion know serve's options: it is declared in the tool.
        let helpCommand = try cli.run(["help", "serve"], module: nil)
        #expect(helpCommand.status == 0 && helpCommand.standardOutput.contains("--listen <address>"), "\(helpCommand.standardOutput)")
        let completion = try cli.run(["--generate-completion-script", "bash"], module: nil)
        #expect(completion.standardOutput.contains("--listen") && completion.standardOutput.contains("--client-token-file"))

        // A proxy configuration error found by the companion: a usage error in the tool's own
        // words and code.
        let refused = try cli.run(["serve", "--listen", "0.0.0.0:8787", "--allow", "GET /v1/workspace", "--env", "sandbox",
                                   "--api-key", "00000000-0000-4000-8000-000000000000"], module: nil)
        #expect(refused.status == 2, "\(refused.standardError)")
        #expect(refused.standardError.hasPrefix("fireblocks-hsm: error: --listen (12 characters, not shown): the proxy listens on loopback literals only"),
                "\(refused.standardError)")
        // And one found by the tool itself, before the companion starts.
        let noRule = try cli.run(["serve", "--listen", "unix:/tmp/x.sock", "--json"], module: nil)
        #expect(noRule.status == 2 && noRule.standardError.contains("--allow"), "\(noRule.standardError)")
    }

    @Test func aMissingCompanionIsNamedNotSoughtInPATH() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // The tool alone in a directory, and a decoy companion on PATH that must not run.
        let alone = cli.files + "/alone"
        let decoys = cli.files + "/decoys"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: decoys, withIntermediateDirectories: true)
        try Executable.copy(CLIHarness.binary, to: alone + "/fireblocks-hsm")
        let marker = cli.files + "/decoy-ran"
        try Executable.script("#!/bin/sh\ntouch \(marker)\n", at: decoys + "/fireblocks-hsm-net")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: decoys + "/fireblocks-hsm-net")

        let path = decoys + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let api = ["--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]
        // The API commands hand over before anything else: a prompted PIN is never asked for
        // (there is no terminal here, so asking would fail differently), no profile is read.
        let token = ["--module", SoftHSM.modulePath, "--token", cli.label, "--pin-source", "prompt"]
        for arguments in [["serve", "--listen", "unix:/tmp/x.sock", "--allow", "GET /v1/workspace"], ["bench", "proxy", "--json"],
                          ["request", "GET", "/v1/workspace"] + api + token,
                          ["api-user", "list", "--json"] + api + token,
                          ["onboard", "--key", "ci-bot", "--name", "ci-bot", "--role", "SIGNER", "--o", "Acme", "--submit",
                           "--admin-key", "admin"] + api + token,
                          // onboard is a network command with or without --submit: no flag picks the binary.
                          ["onboard", "--key", "offline", "--bits", "2048", "--name", "offline", "--role", "SIGNER", "--o", "Acme"] + token] {
            let result = try Subprocess.run(alone + "/fireblocks-hsm", arguments, environment: cli.environment(["PATH": path]),
                                            workingDirectory: cli.files)
            #expect(result.status == 3, "\(arguments): \(result.standardError)")
            #expect(result.standardError.contains("cannot run \(alone)/fireblocks-hsm-net (No such file or directory)"),
                    "\(result.standardError)")
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
        let json = try Subprocess.run(alone + "/fireblocks-hsm", ["bench", "proxy", "--json"], environment: cli.environment(),
                                      workingDirectory: cli.files)
        #expect((try json.json() as? [String: [String: Any]])?["error"]?["class"] as? String == "io")

        // A usage error in an API command is the signing binary's own: no companion needed.
        let usage = try Subprocess.run(alone + "/fireblocks-hsm", ["api-user", "wait", "--until", "SOMEDAY"] + api,
                                       environment: cli.environment(), workingDirectory: cli.files)
        #expect(usage.status == 2, "\(usage.standardError)")
        let help = try Subprocess.run(alone + "/fireblocks-hsm", ["api-user", "create", "--help"], environment: cli.environment(),
                                      workingDirectory: cli.files)
        #expect(help.status == 0 && help.standardOutput.contains("--co-signer-setup"), "\(help.standardOutput)")

        // Every setting of serve is checked by the tool itself, before any hand-over: a bad one
        // is a usage error here, where no companion exists.
        let secrets = cli.files + "/client-tokens"
        try "payouts 0123456789abcdef0123456789\n".write(toFile: secrets, atomically: true, encoding: .utf8)
        chmod(secrets, 0o644)
        let serve = ["serve", "--allow", "GET /v1/workspace"] + api
        for (arguments, message) in [
            (["--listen", "0.0.0.0:8787"], "--listen (12 characters, not shown): the proxy listens on loopback literals only"),
            (["--listen", "unix:relative.sock"], "--listen unix:PATH needs an absolute socket path"),
            (["--listen", "127.0.0.1:8787", "--allow", "GET /v1/%2e%2e"], "--allow (14 characters, not shown): the path starts with '/'"),
            (["--listen", "127.0.0.1:8787", "--rate", "fast"], "--rate (4 characters, not shown) is not N/s"),
            (["--listen", "127.0.0.1:8787", "--max-body", "2GiB"], "--max-body (4 characters, not shown) is over 1GiB"),
            (["--listen", "127.0.0.1:8787", "--checkpoint-every", "0"], "--checkpoint-every must be 1 to 1000000"),
            (["--listen", "127.0.0.1:8787", "--client-token-file", secrets], "holds secrets and is readable by group or others"),
            (["--listen", "127.0.0.1:8787", "--client-token-file", cli.files + "/none"], "the client-token file cannot be read (No such file or directory; the value is not shown"),
        ] {
            let result = try Subprocess.run(alone + "/fireblocks-hsm", serve + arguments, environment: cli.environment(), workingDirectory: cli.files)
            #expect(result.status == 2, "\(arguments): \(result.standardError)")
            #expect(result.standardError.contains(message), "\(arguments): \(result.standardError)")
            #expect(!result.standardError.contains("cannot run"), "\(arguments) was handed over before it was checked")
        }
        // So are the API flags of every network command.
        for arguments in [["request", "GET", "/v1/workspace", "--env", "mars"], ["api-user", "list", "--env", "sandbox", "--base-url", "https://x.example/v1"],
                          ["api-user", "list", "--base-url", "http://api.example/v1"], ["request", "GET", "/v1/workspace", "--env", "sandbox", "--jwt-lifetime", "56"],
                          ["bench", "proxy", "--env", "sandbox", "--attempts", "11"],
                          // …and the token's: the PIN source's syntax, a URI's pin-value, the key URI.
                          ["request", "GET", "/v1/workspace", "--env", "sandbox", "--pin-source", "1234"],
                          ["serve", "--listen", "unix:/tmp/x.sock", "--allow", "GET /v1/x", "--env", "sandbox", "--token", "pkcs11:token=fb;pin-value=1234"],
                          ["api-user", "list", "--env", "sandbox", "--key", "pkcs11:objct=admin"],
                          ["onboard", "--key", "k", "--name", "k", "--role", "SIGNER", "--o", "A", "--module", "/x.so", "--token", "pkcs11:token=fb;module-path=/y.so"]] {
            let result = try Subprocess.run(alone + "/fireblocks-hsm", arguments, environment: cli.environment(), workingDirectory: cli.files)
            #expect(result.status == 2 && !result.standardError.contains("cannot run"), "\(arguments): \(result.standardError)")
            #expect(!result.standardError.contains("1234"), "a PIN typed in the wrong place is not echoed")
        }
    }

    /// One command tree for both executables: the companion parses the very tree the tool
    /// does, and the commands it runs are those whose type is a NetworkCommand.
    @Test func bothExecutablesParseOneTreeAndTheNetworkCommandsAreATypesProperty() throws {
        #expect(CommandTree.networkCommands() == [
            "key delete", "request", "api-user create", "api-user list", "api-user show", "api-user wait", "api-user pairing-token",
            "approval-key create", "approval-key list", "approval-key show", "approval-key delete", "approval-key rotate",
            "approvals list", "approvals show", "approvals approve", "approvals reject", "approvals watch",
            "onboard", "serve", "policy check", "policy test", "bench proxy", "bench policy", "doctor-network",
        ])
        let cli = try CLIHarness()
        defer { cli.remove() }
        let companion = URL(fileURLWithPath: CLIHarness.binary).deletingLastPathComponent().path + "/fireblocks-hsm-net"
        for path in [[]] + CommandTree.leaves(under: FireblocksHSMCommand.self).map({ $0.path.split(separator: " ").map(String.init) }) {
            let tool = try Subprocess.run(CLIHarness.binary, path + ["--help"], environment: cli.environment(), workingDirectory: cli.files)
            let net = try Subprocess.run(companion, path + ["--help"], environment: cli.environment(), workingDirectory: cli.files)
            #expect(tool.status == 0 && net.status == 0, "\(path)")
            #expect(tool.standardOutput == net.standardOutput, "\(path): the two executables disagree")
        }
    }

    /// The manifest's map of the targets names every command the companion runs (a command, or
    /// a group whose commands all are), so the next reader of Package.swift is not misled.
    @Test func theManifestNamesEveryNetworkCommand() throws {
        let manifest = try String(contentsOfFile: CLIHarness.repository + "/Package.swift", encoding: .utf8)
        let header = manifest.split(separator: "\n").prefix { $0.hasPrefix("//") }.joined(separator: " ")
            .replacingOccurrences(of: "//", with: " ").split(whereSeparator: \.isWhitespace).joined(separator: " ")
        let network = CommandTree.networkCommands()
        let leaves = CommandTree.leaves(under: FireblocksHSMCommand.self).map(\.path)
        for path in network {
            let group = String(path.split(separator: " ").first ?? "")
            let wholeGroup = leaves.filter { $0.hasPrefix(group + " ") }.allSatisfy(network.contains)
            #expect(header.contains("`\(path)`") || (wholeGroup && header.contains("`\(group)`")), "Package.swift's header does not name '\(path)'")
        }
    }

    /// The companion runs with the command's PIN source: one that others could have written is
    /// refused, as a PKCS#11 module would be, before it runs.
    @Test func aCompanionOthersCouldHaveWrittenIsNotRun() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let alone = cli.files + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try Executable.copy(CLIHarness.binary, to: alone + "/fireblocks-hsm")
        let marker = cli.files + "/planted-ran"
        try Executable.script("#!/bin/sh\ntouch \(marker)\n", at: alone + "/fireblocks-hsm-net")
        let request = ["request", "GET", "/v1/workspace", "--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]

        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: alone + "/fireblocks-hsm-net")
        let writable = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(writable.status == 3, "\(writable.standardError)")
        #expect(writable.standardError.contains("is writable by group or others (mode 777)"), "\(writable.standardError)")

        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: alone + "/fireblocks-hsm-net")
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: alone)
        let openDirectory = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(openDirectory.status == 3, "\(openDirectory.standardError)")
        #expect(openDirectory.standardError.contains("directory \(alone) is writable by group or others"), "\(openDirectory.standardError)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the planted companion ran")

        // Made safe again, the same file does run (so the refusals above were the check's).
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: alone)
        _ = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    /// Every directory on the companion's way is judged, not only its own: whoever can write
    /// one further up can rename the directory below and put a companion of theirs in its
    /// place. A world-writable ancestor is refused, naming it; a sticky one (as /tmp) is not.
    @Test func aCompanionUnderADirectoryOthersCanWriteIsNotRun() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let open = cli.files + "/chain/open"
        let bin = open + "/deeper/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try Executable.copy(CLIHarness.binary, to: bin + "/fireblocks-hsm")
        let marker = cli.files + "/planted-ran"
        try Executable.script("#!/bin/sh\ntouch \(marker)\n", at: bin + "/fireblocks-hsm-net")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin + "/fireblocks-hsm-net")
        let request = ["request", "GET", "/v1/workspace", "--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]

        #expect(chmod(open, 0o777) == 0)
        let refused = try Subprocess.run(bin + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(refused.status == 3, "\(refused.standardError)")
        #expect(refused.standardError.contains("directory \(open), on the way to it (whoever can write it can rename what is below) is writable by group or others (mode 777)"),
                "\(refused.standardError)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the companion ran")

        // Sticky, as /tmp: only an entry's owner may rename it there.
        #expect(chmod(open, 0o1777) == 0)
        _ = try Subprocess.run(bin + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(chmod(open, 0o755) == 0)
    }

    /// The Debian package's layout: PREFIX/bin/fireblocks-hsm finds
    /// PREFIX/libexec/fireblocks-hsm/fireblocks-hsm-net, from its own real path (a link to it
    /// elsewhere changes nothing), never from PATH; one beside it, as in a build tree, comes first.
    @Test func anInstalledLayoutFindsTheCompanionInLibexec() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let prefix = cli.files + "/prefix"
        let libexec = prefix + "/libexec/fireblocks-hsm"
        let decoys = cli.files + "/decoys"
        let links = cli.files + "/links"
        for directory in [prefix + "/bin", libexec, decoys, links] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try Executable.copy(CLIHarness.binary, to: prefix + "/bin/fireblocks-hsm")
        try FileManager.default.createSymbolicLink(atPath: links + "/fireblocks-hsm", withDestinationPath: prefix + "/bin/fireblocks-hsm")
        /// A stand-in companion that records which one ran, and with what.
        func companion(_ path: String, marker: String) throws {
            try Executable.script("#!/bin/sh\necho \"$0 $*\" > \(marker)\n", at: path)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        }
        let installed = cli.files + "/libexec-ran", decoy = cli.files + "/decoy-ran", beside = cli.files + "/beside-ran"
        try companion(libexec + "/fireblocks-hsm-net", marker: installed)
        try companion(decoys + "/fireblocks-hsm-net", marker: decoy)
        let path = decoys + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let request = ["request", "GET", "/v1/workspace", "--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]

        for tool in [prefix + "/bin/fireblocks-hsm", links + "/fireblocks-hsm"] {
            try? FileManager.default.removeItem(atPath: installed)
            let result = try Subprocess.run(tool, request, environment: cli.environment(["PATH": path]), workingDirectory: cli.files)
            #expect(result.status == 0, "\(tool): \(result.standardError)")
            let ran = (try? String(contentsOfFile: installed, encoding: .utf8)) ?? ""
            #expect(ran == libexec + "/fireblocks-hsm-net request GET /v1/workspace --env sandbox --api-key 00000000-0000-4000-8000-000000000000\n",
                    "\(tool): \(ran)")
        }
        #expect(!FileManager.default.fileExists(atPath: decoy), "the companion was sought in PATH")

        // One beside the executable comes first (a build tree).
        try companion(prefix + "/bin/fireblocks-hsm-net", marker: beside)
        try? FileManager.default.removeItem(atPath: installed)
        _ = try Subprocess.run(prefix + "/bin/fireblocks-hsm", request, environment: cli.environment(["PATH": path]), workingDirectory: cli.files)
        #expect(FileManager.default.fileExists(atPath: beside) && !FileManager.default.fileExists(atPath: installed))

        // The installed one is held to the same check, and a missing one names both places.
        try FileManager.default.removeItem(atPath: prefix + "/bin/fireblocks-hsm-net")
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: libexec + "/fireblocks-hsm-net")
        let writable = try Subprocess.run(prefix + "/bin/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(writable.status == 3 && writable.standardError.contains("is writable by group or others (mode 777)"), "\(writable.standardError)")
        try FileManager.default.removeItem(atPath: libexec + "/fireblocks-hsm-net")
        let missing = try Subprocess.run(prefix + "/bin/fireblocks-hsm", request, environment: cli.environment(["PATH": path]), workingDirectory: cli.files)
        #expect(missing.status == 3, "\(missing.standardError)")
        #expect(missing.standardError.contains("cannot run \(prefix)/bin/fireblocks-hsm-net (No such file or directory), nor \(libexec)/fireblocks-hsm-net (No such file or directory)"),
                "\(missing.standardError)")
        #expect(!FileManager.default.fileExists(atPath: decoy))

        // A companion in libexec that is the tool itself is refused too.
        try FileManager.default.createSymbolicLink(atPath: libexec + "/fireblocks-hsm-net", withDestinationPath: prefix + "/bin/fireblocks-hsm")
        let itself = try Subprocess.run(prefix + "/bin/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(itself.status == 3 && itself.standardError.contains("\(libexec)/fireblocks-hsm-net (it is fireblocks-hsm itself"), "\(itself.standardError)")
    }

    @Test func aCompanionThatIsTheToolItselfIsRefusedNotLooped() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let alone = cli.files + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try Executable.copy(CLIHarness.binary, to: alone + "/fireblocks-hsm")
        try FileManager.default.createSymbolicLink(atPath: alone + "/fireblocks-hsm-net", withDestinationPath: "fireblocks-hsm")
        let result = try Subprocess.run(alone + "/fireblocks-hsm", ["request", "GET", "/v1/workspace", "--env", "sandbox",
                                                                     "--api-key", "00000000-0000-4000-8000-000000000000"],
                                        environment: cli.environment(), workingDirectory: cli.files)
        #expect(result.status == 3, "\(result.standardError)")
        #expect(result.standardError.contains("cannot run \(alone)/fireblocks-hsm-net (it is fireblocks-hsm itself"),
                "\(result.standardError)")
    }

    @Test func serverAnswersKeepEveryDigitWhenWrappedAsJSON() throws {
        let text = #"{"amount":12345678901234567890.123456789,"big":98765432109876543210,"list":[true,null,"a/b",-0.5,1e3],"nested":{"x":""}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let again = String(decoding: try encoder.encode(value), as: UTF8.self)
        #expect(again == #"{"amount":12345678901234567890.123456789,"big":98765432109876543210,"list":[true,null,"a/b",-0.5,1000],"nested":{"x":""}}"#)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(JSONValue.self, from: Data("{".utf8)) }
    }
}
