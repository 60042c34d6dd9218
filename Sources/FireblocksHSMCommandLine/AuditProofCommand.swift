import ArgumentParser
import AuditTrail
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct AuditProofCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proof",
        abstract: "Print a proof for outside verifiers: a record's inclusion, or two trees' consistency.",
        usage: "fireblocks-hsm audit proof [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n(--index <n> | --consistency <old> [<new>]) [--json]",
        discussion: """
            --index N prints record N's c2sp.org/tlog-proof in the tree of the token's
            anchored checkpoint: its index, its RFC 6962 inclusion path and the signed
            checkpoint (the record's exact line is in --json, as recordBase64).
            --consistency OLD [NEW] prints the RFC 6962 consistency proof from the tree of
            OLD records to that of NEW (default: the anchored checkpoint's size): a line
            "old OLD ROOT", a line "new NEW ROOT", then one base64 hash per line.
            Both are computed from the log's tiles (a few tile reads, not the whole log) and
            verified against the token's anchored checkpoint before they are printed.

            Examples:
              fireblocks-hsm audit proof --token fb --index 41 > record-41.tlog-proof
              fireblocks-hsm audit proof --token fb --consistency 1000
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Prove that record n is in the anchored tree.", valueName: "n"))
    var index: Int?

    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Prove the tree of <old> records a prefix of the one of <new> (default: the anchored size).", valueName: "old> <new"))
    var consistency: [Int] = []

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (index != nil) != !consistency.isEmpty else {
            throw ValidationError(index == nil ? "'audit proof' needs either '--index <n>' or '--consistency <old> [<new>]'"
                                               : "'audit proof' proves one thing at a time: '--index <n>' or '--consistency <old> [<new>]', not both")
        }
        if let index, index < 0 { throw ValidationError("'--index' takes a record number, from 0") }
        if !consistency.isEmpty {
            guard consistency.count <= 2, consistency.allSatisfy({ $0 >= 0 }) else {
                throw ValidationError("'--consistency' takes one or two tree sizes: <old> [<new>]")
            }
            if consistency.count == 2, consistency[0] > consistency[1] {
                throw ValidationError("'--consistency <old> <new>': the old size is at most the new one")
            }
        }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let target = try token.target(profile: profile)
        let directory = audit.directory(profile: profile)
        if let index {
            let report = try AuditOperations.inclusionProof(target: target, directory: directory, index: index, observer: Console())
            try output.emit(report) { $0.tlogProof }
        } else {
            let report = try AuditOperations.consistencyProof(target: target, directory: directory, oldSize: consistency[0],
                                                              newSize: consistency.count == 2 ? consistency[1] : nil, observer: Console())
            try output.emit(report) { $0.text }
        }
    }
}

struct AuditTilesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiles",
        abstract: "Rebuild the log's tiles (its tree's hashes, for proofs) from its records.",
        usage: "fireblocks-hsm audit tiles [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n--rebuild [--json]",
        discussion: """
            The tiles beside the log are derived from its records; appends keep them. This
            builds them afresh in one pass over the log, once the log is found to extend the
            token's anchored checkpoint, and puts them in place of the old ones: after a
            verification named a tile that differs, or ahead of the first append of a long
            log written before tiles existed. Nothing signed changes; nothing is recorded.

            Examples:
              fireblocks-hsm audit tiles --token fb --rebuild
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Flag(help: "Build the tiles afresh from the records (the only thing this command does).")
    var rebuild = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard rebuild else { throw ValidationError("'audit tiles' needs '--rebuild' (say what you mean to do)") }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let report = try AuditOperations.rebuildTiles(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                                      observer: Console())
        try output.emit(report) { report in
            var text = "Rebuilt the tiles of \(report.records) records: \(report.fullTiles) full and \(report.partialTiles) partial tiles"
            text += report.compared > 0 ? " (\(report.compared) old full tiles compared).\n" : ".\n"
            if report.replacedCount > 0 {
                text += "\(report.replacedCount) tiles differed from the records and were replaced:\n" + report.replaced.map { "  \($0)\n" }.joined()
                if report.replacedCount > report.replaced.count { text += "  …\n" }
            }
            return text
        }
    }
}
