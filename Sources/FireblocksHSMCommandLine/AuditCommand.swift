import ArgumentParser
import AuditTrail
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The token's tamper-evident audit trail: an RFC 6962 log with checkpoints signed on the token.",
        subcommands: [AuditInitCommand.self, AuditShowCommand.self, AuditCheckpointCommand.self,
                      AuditVerifyCommand.self, AuditProofCommand.self, AuditTilesCommand.self, AuditSegmentCommand.self,
                      AuditArchiveCommand.self, AuditRepairCommand.self, AuditReanchorCommand.self]
    )
}

struct AuditInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make the audit key (EC P-256, on the token, under the key policy) if there is none.",
        usage: "fireblocks-hsm audit init [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--audit-min-free <size|N%>] [--json]",
        discussion: """
            Prints the SHA-256 of the audit key's public key: give it to your auditors, who
            check every checkpoint and evidence bundle against it.

            Examples:
              fireblocks-hsm audit init --token fb
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let profile = try token.loadProfile()
        let report = try AuditOperations.initialize(target: try token.target(profile: profile), directory: audit.directory(profile: profile), observer: Console())
        try output.emit(report) { report in
            "\(report.created ? "Created" : "Found") the audit key '\(report.label)' on token '\(report.token)'.\nSHA-256 of its public key: \(report.spkiSHA256)\n\(report.publicKeyPEM)\n"
        }
    }
}

struct AuditShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the token's audit records: a table, one JSON document, or JSON lines.",
        usage: "fireblocks-hsm audit show [--token <label|uri>] [--key <label>]\n[--user <name>] [--event <event>] [--since <date|age>]\n[--until <date|age>] [--follow] [--json | --jsonl] [<options>]",
        discussion: """
            The table (80 columns) has the time (UTC), the event, the key, the API user or
            the request URI, and the result; --json has everything. Filters combine:
              --key LABEL        records that name this key
              --user NAME        an API user's name or id, or the local account that acted
              --event EVENT      repeatable; 'proxy.*' for every event of the proxy
              --since, --until   a day (YYYY-MM-DD, UTC) or an age (30m, 12h, 7d)
            --follow prints new records as they are written, until Ctrl-C or SIGTERM,
            or until its reader leaves (exit 0). Each record is checked in its place: a
            line that is not, or a log replaced, removed or cut, stops it (exit 11).
            --jsonl prints each record's line exactly as the log holds it (for a SIEM;
            with --follow, a stream).

            Examples:
              fireblocks-hsm audit show --token fb --since 2026-11-01 --event key.generated
              fireblocks-hsm audit show --token fb --key ci-bot --since 7d
              fireblocks-hsm audit show --token fb --event 'proxy.*' \\
                  --follow --jsonl >> siem.jsonl
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Only records from this day (YYYY-MM-DD, UTC) or this age (30m, 12h, 7d) on.", valueName: "date|age"))
    var since: String?

    @Option(help: ArgumentHelp("Only records before this day (YYYY-MM-DD, UTC; the day itself included) or age.", valueName: "date|age"))
    var until: String?

    @Option(help: ArgumentHelp("Only records of this event, e.g. key.generated, or a prefix: 'proxy.*' (repeatable).", valueName: "event"))
    var event: [String] = []

    @Option(help: ArgumentHelp("Only records that name this key label.", valueName: "label"))
    var key: String?

    @Option(help: ArgumentHelp("Only records of this API user (name or id), or written by this local account.", valueName: "name|id"))
    var user: String?

    @Flag(help: "Keep printing new records as they are written, until Ctrl-C or SIGTERM.")
    var follow = false

    @Flag(help: "Print each record's line exactly as the log holds it, one per line (JSON Lines).")
    var jsonl = false

    @Option(help: ArgumentHelp("With --follow: seconds between looks at the log.", valueName: "seconds"))
    var interval: Double = 0.5

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let since, Self.time(since, endOfDay: false) == nil { throw ValidationError("'--since' takes a day as YYYY-MM-DD or an age such as 30m, 12h, 7d") }
        if let until, Self.time(until, endOfDay: true) == nil { throw ValidationError("'--until' takes a day as YYYY-MM-DD or an age such as 30m, 12h, 7d") }
        if output.json, jsonl { throw ValidationError("'--json' prints one document and '--jsonl' one record per line: choose one") }
        if output.json, follow { throw ValidationError("'--json' prints one document, which a follow never finishes: use '--jsonl' with '--follow'") }
        guard interval.isFinite, (0.05...60).contains(interval) else { throw ValidationError("'--interval' must be 0.05 to 60 seconds") }
    }

    static func day(_ text: String) -> Date? {
        guard text.utf8.count == 10 else { return nil }  // YYYY-MM-DD and nothing after it
        return try? Date(text, strategy: Date.ISO8601FormatStyle().year().month().day())
    }

    /// A day (its start, or with `endOfDay` the start of the next) or an age before now.
    static func time(_ text: String, endOfDay: Bool, now: Date = Date()) -> Date? {
        if let day = day(text) { return endOfDay ? day.addingTimeInterval(86_400) : day }
        guard let unit = text.last, let seconds = ["s": 1.0, "m": 60, "h": 3600, "d": 86_400][String(unit)],
              let count = Int(text.dropLast()), count >= 0, count <= 100_000 else { return nil }
        return now.addingTimeInterval(-Double(count) * seconds)
    }

    var query: AuditQuery {
        AuditQuery(since: since.flatMap { Self.time($0, endOfDay: false) }, until: until.flatMap { Self.time($0, endOfDay: true) },
                   events: event, key: key, user: user)
    }

    func run() throws {
        let console = Console()
        let profile = try token.loadProfile()
        let reader = try AuditOperations.AuditReader(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                                     observer: console)
        let query = query
        var archivedNoted = 0
        /// Says once which records were passed over because their segment is archived.
        func noteArchived() {
            for range in reader.archivedPassed.dropFirst(archivedNoted) {
                console.note("records \(range.first)–\(range.first + range.count - 1) are archived (not shown): put their segment back in the log's segment directory to show them")
            }
            archivedNoted = reader.archivedPassed.count
        }
        defer { noteArchived() }
        if output.json {
            try output.emit(try reader.read(query: query).records.map(\.record)) { _ in "" }
            return
        }
        // The records go out as they are read, a batch at a time: a long log is never held
        // whole, and a reader that leaves (`| head -1`) or a full disk is noticed at once.
        let out = RecordOutput()
        // Unchanged bytes are for a file or a pipe (a SIEM); on a terminal, a record's text
        // (C1 controls, bidi overrides the JSON encoder leaves as they are) is sanitized.
        let raw = !console.standardOutputIsTerminal
        var headerShown = jsonl
        /// False once the reader has left.
        func print(_ records: [AuditOperations.ShownRecord]) throws -> Bool {
            for shown in records {
                if !headerShown {
                    guard try out.write(AuditTable.header + "\n") else { return false }
                    headerShown = true
                }
                let written: Bool
                if jsonl {
                    written = raw ? try out.write(bytes: shown.line + [0x0A])
                        : try out.write(TerminalText.sanitized(String(decoding: shown.line, as: UTF8.self), limit: Int.max) + "\n")
                } else {
                    written = try out.write(AuditTable.row(shown.record) + "\n")
                }
                guard written else { return false }
            }
            return true
        }
        /// Everything appended since the last look; false once the reader has left.
        func catchUp() throws -> Bool {
            while true {
                let batch = try reader.next(query: query)
                if batch.read == 0 { return true }
                guard try print(batch.records) else { return false }
            }
        }

        guard try catchUp() else { return }
        if !headerShown {
            _ = try out.write(follow ? AuditTable.header + "\n" : "No audit records.\n")
        }
        guard follow else { return }
        let stop = StopSignals()
        while !stop.received {
            stop.wait(seconds: interval)
            // A reader that left ends the follow even when nothing new is written.
            if stop.received || out.readerLeft { break }
            guard try catchUp() else { break }
        }
    }
}

/// Where `audit show` writes its records: standard output, every write checked. SIGPIPE is
/// ignored while it is used, so that a reader that leaves (`| head -1`, a SIEM forwarder that
/// stops) is an `EPIPE` this command sees and ends on quietly, with success, instead of a signal
/// that kills it; any other failure (a full disk, an I/O error) is an error (exit 3) saying
/// that the records were not all written.
struct RecordOutput {
    /// Standard output (another descriptor in tests).
    let descriptor: Int32

    init(descriptor: Int32 = STDOUT_FILENO) {
        self.descriptor = descriptor
        signal(SIGPIPE, SIG_IGN)
    }

    /// Writes `text`; false when the reader has left.
    func write(_ text: String) throws -> Bool {
        try write(bytes: Array(text.utf8))
    }

    /// Writes `bytes`; false when the reader has left.
    func write(bytes: [UInt8]) throws -> Bool {
        switch Console.writeAll(bytes, to: descriptor) {
        case 0: return true
        case EPIPE: return false
        case let code:
            throw CommandLineError("cannot write the audit records to standard output (\(String(cString: strerror(code)))): the records after the last one written were not shown",
                                   status: .fileError)
        }
    }

    /// Whether standard output is a pipe or socket nobody reads any more (or a terminal that
    /// hung up), asked without writing.
    var readerLeft: Bool {
        var entry = pollfd(fd: descriptor, events: 0, revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        return entry.revents & Int16(POLLERR | POLLHUP) != 0
    }
}

/// The table of `audit show`: fixed columns that fit 80 columns, every cell sanitized and cut
/// to its width.
enum AuditTable {
    /// Width of each column but the last (RESULT, at most 6).
    static let widths = [19, 21, 12, 18]

    static var header: String { line(["TIME (UTC)", "EVENT", "KEY", "USER/URI", "RESULT"]) }

    static func row(_ record: AuditRecord) -> String {
        let summary = AuditRecordSummary(record)
        let time = String(record.time.prefix(19).map { $0 == "T" ? " " : $0 })
        let subject = summary.user ?? summary.uri ?? (record.actor.user.isEmpty ? "-" : "(\(record.actor.user))")
        return line([time, record.event, summary.key ?? "-", subject, record.outcome.result == "ok" ? "ok" : "failed"])
    }

    static func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            let width = index < widths.count ? widths[index] : 6
            let clean = TerminalText.sanitized(cell, limit: 200)
            let cut = clean.count > width ? String(clean.prefix(width - 1)) + "…" : clean
            return index < widths.count ? cut + String(repeating: " ", count: width - cut.count) : cut
        }.joined(separator: " ").trimmingTrailingSpaces()
    }
}

struct AuditCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Print the latest signed checkpoint (C2SP signed note) anchored on the token.",
        usage: "fireblocks-hsm audit checkpoint [--module <path|name>]\n[--token <label|uri>] [--pin-source <source>] [--profile <name>]\n[--audit-dir <path>]",
        discussion: """
            Auditors keep these outside the operator's reach; 'audit verify
            --from-checkpoint' then proves the log was neither edited nor cut short since.

            Examples:
              fireblocks-hsm audit checkpoint --token fb > 2026-11-25.checkpoint
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    func run() throws {
        let profile = try token.loadProfile()
        guard let note = try AuditOperations.checkpoint(target: try token.target(profile: profile), directory: audit.directory(profile: profile), observer: Console()) else {
            throw CommandLineError("the token holds no audit checkpoint yet", status: .auditIntegrity)
        }
        Console().output(note)
    }
}

struct AuditVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the audit log: intact, and consistent with the token's checkpoint (and yours).",
        usage: "fireblocks-hsm audit verify [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--from-checkpoint <path> [--full]] [--json]",
        discussion: """
            Exits 0 only when every record is in place, the token's checkpoint is signed by
            the audit key and covers a prefix of the log, and so does --from-checkpoint.
            Every record is hashed, and every tile beside the log compared with the records.
            With --from-checkpoint, only the records after it are hashed: an RFC 6962
            consistency proof (from the tiles, verified) shows your checkpoint's tree a
            prefix of the token's, and the records after it must extend it to the token's
            root. --full hashes every record all the same.

            Examples:
              fireblocks-hsm audit verify --token fb
              fireblocks-hsm audit verify --token fb --from-checkpoint saved.checkpoint
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Option(name: .customLong("from-checkpoint"), help: ArgumentHelp("A signed checkpoint kept by an auditor.", valueName: "path"))
    var fromCheckpoint: String?

    @Flag(help: "With --from-checkpoint: hash every record, not only those after it.")
    var full = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if full, fromCheckpoint == nil { throw ValidationError("'--full' goes with '--from-checkpoint' (without it, every record is hashed)") }
    }

    struct Report: Encodable {
        let intact: Bool
        let records: Int
        let rootHex: String
        let checkedAgainst: [String]
        let auditKeySHA256: String?
        let legacyKeyIDs: [String]
        /// `full` or `incremental`.
        let mode: String
        let hashedFrom: Int
        let recordsHashed: Int
        let fallbackReason: String?
        let consistencyProof: [String]
        let tiles: TileCheck?
        /// Archived segments: put back and read, or not read.
        let archived: [ArchivedRange]
    }

    func run() throws {
        var external: String?
        if let fromCheckpoint {
            guard let data = FileManager.default.contents(atPath: fromCheckpoint) else {
                throw CommandLineError("cannot read the checkpoint \(fromCheckpoint)", status: .fileError)
            }
            external = String(decoding: data, as: UTF8.self)
        }
        let profile = try token.loadProfile()
        let result = try AuditOperations.verify(target: try token.target(profile: profile), directory: audit.directory(profile: profile), external: external,
                                                full: full, observer: Console())
        let report = Report(intact: true, records: result.records, rootHex: result.rootHex, checkedAgainst: result.checkedAgainst,
                            auditKeySHA256: result.auditKeySHA256, legacyKeyIDs: result.legacyKeyIDs, mode: result.mode,
                            hashedFrom: result.hashedFrom, recordsHashed: result.recordsHashed, fallbackReason: result.fallbackReason,
                            consistencyProof: result.consistencyProof.map { Data($0).base64EncodedString() }, tiles: result.tiles,
                            archived: result.archived)
        try output.emit(report) { report in
            var text = report.auditKeySHA256 == nil
                ? "No audit trail yet: the token has no audit key and the log no records.\n"
                : "Audit log intact: \(report.records) records, root \(report.rootHex); consistent with: \(report.checkedAgainst.joined(separator: ", ")); audit key SHA-256 \(report.auditKeySHA256 ?? "none")\n"
            if report.auditKeySHA256 != nil {
                text += report.mode == "incremental"
                    ? "checked: records \(report.hashedFrom)–\(report.records - 1) hashed (\(report.recordsHashed) of \(report.records)); records before \(report.hashedFrom) proven by a consistency proof (\(report.consistencyProof.count) hashes, from the tiles) from your checkpoint to the token's\n"
                    : report.recordsHashed == report.records
                        ? "checked: all \(report.recordsHashed) records hashed\n"
                        : "checked: \(report.recordsHashed) records hashed; the other \(report.records - report.recordsHashed) are archived (below)\n"
            }
            if let reason = report.fallbackReason {
                text += "note: your checkpoint could not be checked from the tiles alone (\(reason)), so every record was hashed\n"
            }
            if let tiles = report.tiles {
                text += tiles.present
                    ? "tiles: \(tiles.checked) compared with the records, all equal; \(tiles.offsetsChecked) offset index entries checked\(tiles.missing > 0 ? "; \(tiles.missing) not built yet (the next append or 'audit tiles --rebuild' builds them)" : "")\n"
                    : "tiles: none yet (the next append or 'audit tiles --rebuild' builds them)\n"
            }
            for range in report.archived {
                let records = "records \(range.first)–\(range.first + range.count - 1)"
                text += range.putBack
                    ? "archived \(records): put back and read; it is the file archived (sha256 \(range.sha256))\n"
                    : "archived \(records): not read (moved to \(TerminalText.sanitized(range.to))/\(TerminalText.sanitized(range.file)), sha256 \(range.sha256)); the tree used the hashes kept for them\n"
            }
            if let tiles = report.tiles, !tiles.complete {
                text += "note: the tiles after an archived segment without level-0 tiles were not compared\n"
            }
            if !report.legacyKeyIDs.isEmpty {
                text += "note: the \(report.legacyKeyIDs.joined(separator: " and ")) checkpoint carries the key ID of fireblocks-hsm before 2026-12 (name-based); outside C2SP verifiers find no signature on it until the next checkpoint is signed\n"
            }
            return text
        }
    }
}

struct AuditRepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Cut off a torn last record (an interrupted append), and record that it was cut.",
        usage: "fireblocks-hsm audit repair [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--audit-min-free <size|N%>] [--truncate-torn]",
        discussion: """
            Examples:
              fireblocks-hsm audit verify --token fb
              fireblocks-hsm audit repair --token fb --truncate-torn
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Flag(name: .customLong("truncate-torn"), help: "Cut the torn last line off (the only repair there is).")
    var truncateTorn = false

    func validate() throws {
        guard truncateTorn else { throw ValidationError("'audit repair' needs '--truncate-torn' (say what you mean to do)") }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let removed = try AuditOperations.repairTornTail(target: try token.target(profile: profile), directory: audit.directory(profile: profile), observer: Console())
        Console().output(removed > 0 ? "Cut off a torn record of \(removed) bytes; the repair is recorded.\n" : "Nothing to repair: the log has no torn record.\n")
    }
}

struct AuditReanchorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reanchor",
        abstract: "Accept the log as it is now: sign and anchor a checkpoint over it, recorded with your reason.",
        usage: "fireblocks-hsm audit reanchor [--module <path|name>]\n[--token <label|uri>] [--pin-source <source>] [--profile <name>]\n[--audit-dir <path>] [--audit-min-free <size|N%>] [--accept-current]\n--reason <text> [--json]",
        discussion: """
            For a trail the tool refuses to extend because its anchor on the token is
            gone (or its audit key is): after you have found out why, this signs a
            checkpoint over the log's records as they are, records 'audit.reanchored'
            with the reason, and prints what nobody can prove about the records it
            accepted. It makes a new audit key if the old one is gone (give its
            fingerprint to your auditors). Records out of place are still refused: it
            accepts records, it never renumbers them.

            Examples:
              fireblocks-hsm audit reanchor --token fb --accept-current \\
                  --reason "anchor deleted by INC-4711"
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Flag(name: .customLong("accept-current"), help: "Accept the log's records as they are now (say what you mean to do).")
    var acceptCurrent = false

    @Option(help: ArgumentHelp("Why the trail is re-anchored (recorded; one line of printable text, at most 500 characters).", valueName: "text"))
    var reason: String

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard acceptCurrent else { throw ValidationError("'audit reanchor' needs '--accept-current' (say what you mean to do)") }
        guard reason.contains(where: { $0 != " " }), reason.count <= 500,
              reason.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F && !(0x80...0x9F).contains($0.value) }) else {
            throw ValidationError("'--reason' takes one line of printable text, at most 500 characters")
        }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let result = try AuditOperations.reanchor(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                                  reason: reason, observer: Console())
        try output.emit(result) { result in
            var text = "Re-anchored the audit trail: \(result.records) records accepted as they are (root \(result.rootHex)); previous anchor: \(result.previousAnchor)"
            text += result.keyCreated ? "; a new audit key, SHA-256 \(result.auditKeySHA256): give it to your auditors.\n" : ".\n"
            if !result.cannotProve.isEmpty {
                text += "What this cannot prove:\n" + result.cannotProve.map { "  - \($0)\n" }.joined()
            }
            return text
        }
    }
}

