import ArgumentParser
import AuditTrail
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct AuditSegmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segment",
        abstract: "Cut a log written before segments into sealed segments, in place (no record, root or proof changes).",
        usage: "fireblocks-hsm audit segment [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--audit-min-free <size|N%>] [--json]",
        discussion: """
            Appends seal the log's active file into <serial>.segments/ every 2^20
            records (FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS sets another count) and at the
            first append of each UTC day. A log written before that is one file: this
            cuts it by the count (its records' days are not looked at), once it is found
            to extend the token's anchored checkpoint, and records 'audit.segmented'.
            Each segment is written and synced before it is named, and the log's file is
            replaced last: run it again after an interruption and it completes. Stop the
            proxy first (it keeps the log's file open).

            Examples:
              fireblocks-hsm audit segment --token fb
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let profile = try token.loadProfile()
        let report = try AuditOperations.splitIntoSegments(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                                           observer: Console())
        try output.emit(report) { report in
            report.segmentsWritten == 0
                ? "Nothing to cut: \(report.records) records, \(report.segments) sealed segments, \(report.activeRecords) records in the active one.\n"
                : "Cut the log into segments: \(report.segmentsWritten) written (\(report.segments) sealed in all), \(report.activeRecords) of \(report.records) records left in the active one; every root is as it was.\n"
        }
    }
}

struct AuditArchiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Move sealed segments older than a date to other storage, and record that they were moved.",
        usage: "fireblocks-hsm audit archive [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--audit-min-free <size|N%>] --before <date> --to <directory> [--json]",
        discussion: """
            Each sealed segment whose records are all older than --before (a day,
            YYYY-MM-DD UTC, or an age such as 90d) is copied to --to and read back;
            then the record 'audit.archived' names them with their SHA-256s and is
            sealed on the token; then each segment's file here is replaced by a stub
            that keeps the hashes the tree needs. Every root, checkpoint and proof stays
            valid. 'audit verify' says which records it could not read; put a segment
            back (the same name, in <serial>.segments/) and verify reads it and checks
            it is the file archived.

            Examples:
              fireblocks-hsm audit archive --token fb --before 2026-01-01 --to /srv/a
              fireblocks-hsm audit archive --token fb --before 365d --to /srv/a --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Archive segments whose records are all older: a day (YYYY-MM-DD, UTC) or an age (90d).", valueName: "date"))
    var before: String

    @Option(help: ArgumentHelp("The directory to move them to (other storage; made 0700 if missing).", valueName: "directory"))
    var to: String

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard AuditShowCommand.time(before, endOfDay: false) != nil else {
            throw ValidationError("'--before' takes a day as YYYY-MM-DD or an age such as 90d")
        }
        guard !to.isEmpty else { throw ValidationError("'--to' needs a directory") }
    }

    func run() throws {
        guard let date = AuditShowCommand.time(before, endOfDay: false) else { throw ValidationError("'--before' takes a day as YYYY-MM-DD or an age such as 90d") }
        let profile = try token.loadProfile()
        let report = try AuditOperations.archive(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                                 before: date, to: to, observer: Console())
        try output.emit(report) { report in
            guard !report.segments.isEmpty else { return "Nothing to archive: no sealed segment has only records from before that date.\n" }
            var text = "Archived \(report.segments.count) segments to \(TerminalText.sanitized(report.to)) (recorded as record \(report.recordIndex.map(String.init) ?? "?")):\n"
            for segment in report.segments {
                text += "  records \(segment.first)–\(segment.first + segment.count - 1)  \(TerminalText.sanitized(segment.file))  sha256 \(segment.sha256)\n"
            }
            return text
        }
    }
}
