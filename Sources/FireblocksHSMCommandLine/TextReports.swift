import FireblocksHSM
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys
import PKCS11

/// Human-readable renderings of the reports (the default output; `--json` for machines).
enum TextReports {
    static func tokens(_ tokens: [TokenReport]) -> String {
        if tokens.isEmpty { return "No tokens.\n" }
        var rows = [["SLOT", "LABEL", "MANUFACTURER", "MODEL", "SERIAL", "STATE"]]
        for token in tokens {
            let state = token.initialized ? (token.flags.contains("user-pin-locked") ? "pin-locked" : "ready") : "uninitialised"
            rows.append([String(token.slotID), token.label.isEmpty ? "-" : token.label, token.manufacturer,
                         token.model, token.serial.isEmpty ? "-" : token.serial, state])
        }
        return table(rows)
    }

    static func keys(_ keys: [KeyReport]) -> String {
        if keys.isEmpty { return "No private keys on the token.\n" }
        var rows = [["LABEL", "ID", "TYPE", "SHA-256 (SPKI)", "POLICY"]]
        for key in keys {
            rows.append([key.label, key.id.isEmpty ? "-" : shortened(key.id), key.bits.map { "RSA-\($0)" } ?? "?",
                         key.fingerprintSHA256.map(shortened) ?? "-", key.meetsPolicy ? "ok" : "FAILS"])
        }
        return table(rows)
    }

    static func key(_ key: KeyReport) -> String {
        var text = ""
        text += table([
            ["Key", key.label],
            ["Token", key.token],
            ["URI", key.uri],
            ["Type", key.bits.map { "RSA-\($0)" } ?? "RSA (public key unreadable)"],
            ["ID", key.id.isEmpty ? "-" : key.id],
            ["SHA-256", (key.fingerprintSHA256 ?? "-") + " (DER SubjectPublicKeyInfo)"],
            ["Verdict", key.meetsPolicy
                ? "meets policy: generated on the token, sign-only, sensitive, never extractable"
                : "FAILS policy: not used by this tool"],
        ])
        for failure in key.policyFailures { text += "  ✗ \(failure)\n" }
        text += "\nPrivate key attributes\n"
        let required = Dictionary(uniqueKeysWithValues: KeyPolicy.signingKey.requirements.map { ($0.attribute.name, $0.expected) })
        var rows: [[String]] = []
        for name in key.privateKeyAttributes.keys.sorted() {
            guard let value = key.privateKeyAttributes[name] else { continue }
            var mark = ""
            if let expected = required[name] {
                mark = value == .bool(expected) ? "✓ required \(expected)" : "✗ required \(expected)"
            }
            rows.append(["  " + name, value.description, mark])
        }
        text += table(rows)
        if !key.publicKeyAttributes.isEmpty {
            text += "\nPublic key attributes\n"
            text += table(key.publicKeyAttributes.sorted { $0.key < $1.key }.map { ["  " + $0.key, $0.value.description] })
        }
        return text
    }

    static func generated(_ key: KeyReport) -> String {
        "Generated \(key.bits.map { "RSA-\($0)" } ?? "RSA") key '\(key.label)' on token '\(key.token)'.\n\n" + self.key(key)
    }

    static func csr(_ csr: CSRReport) -> String {
        table([
            ["CSR", csr.path],
            ["Subject", csr.subject],
            ["Signature", "\(csr.signatureAlgorithm), made on token '\(csr.key.token)' and verified with the token's public key"],
            ["Key", "\(csr.key.label) (id \(csr.key.id))"],
            ["Key SHA-256", csr.key.fingerprintSHA256],
            ["CSR SHA-256", csr.pemSHA256],
        ])
    }

    static func shortened(_ hex: String) -> String {
        hex.count > 16 ? String(hex.prefix(16)) + "…" : hex
    }

    /// Left-aligned columns separated by two spaces. Cells may hold text from outside (user
    /// names, statuses from the API): each is sanitised for the terminal.
    static func table(_ rows: [[String]]) -> String {
        let rows = rows.map { $0.map { TerminalText.sanitized($0, limit: 200) } }
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() where index < columns - 1 {
                widths[index] = max(widths[index], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n") + "\n"
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}

extension TextReports {
    static func apiUsers(_ users: [APIUser]) -> String {
        var rows = [["ID", "NAME", "ROLE", "STATUS", "ENABLED"]]
        for user in users {
            rows.append([user.id, user.name, user.role ?? "-", user.status ?? "-", user.enabled.map(String.init) ?? "-"])
        }
        return table(rows)
    }

    static func onboarded(_ report: OnboardReport) -> String {
        var rows = [
            ["Token", report.token],
            ["Key", "\(report.keyLabel) (\(report.key); id \(report.keyID))"],
            ["Key SHA-256", report.keyFingerprintSHA256],
            ["CSR", "\(report.csrPath) (\(report.csr))"],
            ["CSR SHA-256", report.csrSHA256],
            ["Evidence", "\(report.evidence)/ (check it: VERIFY.md, or 'fireblocks-hsm evidence verify')"],
        ]
        if let submission = report.submission {
            rows.append(["API user", "\(submission.name) (\(submission.role)): \(submission.result) [X-Request-ID: \(submission.requestID ?? "none")]"])
            rows.append(["Idempotency-Key", submission.idempotencyKey])
            rows.append(["API user id", report.apiUser.map { "\($0.id) (status \($0.status ?? "?"))" }
                ?? userIdentification(submission, status: report.apiUser?.status)])
        }
        if let replaces = report.replaces {
            rows.append(["Replaces", replaces + (report.replacesUserID.map { " (\($0))" } ?? "")])
        }
        if let file = report.pairingTokenFile {
            rows.append(["Pairing token", "\(file) (0600, valid one hour)"])
        }
        var text = table(rows)
        text += "\nNext:\n"
        for step in report.nextSteps { text += "  - \(TerminalText.sanitized(step))\n" }
        // The commands for those steps (the library states them in the API's terms).
        var commands: [String] = []
        if let name = report.name.map(TerminalText.shellQuoted), report.submission != nil, report.apiUser?.status != APIUserStatus.READY.rawValue {
            commands.append("fireblocks-hsm api-user pairing-token \(name) --out pairing.token")
            commands.append("fireblocks-hsm api-user wait \(name) --until READY")
        }
        if report.replaces != nil { commands.append("fireblocks-hsm key delete --key <the predecessor's key label>") }
        if !commands.isEmpty { text += "Commands:\n" + commands.map { "  \($0)\n" }.joined() }
        return text
    }

    /// The new user's id, or why it is not given.
    static func userIdentification(_ submission: APIUserCreationReport, status: String? = nil) -> String {
        switch submission.userIdentification {
        case "identified":
            return "\(submission.userID ?? "?")" + (status.map { " (status \($0))" } ?? "")
        case "ambiguous":
            return "ambiguous: \(submission.candidates.count) listed users could be the new one (\(submission.candidates.joined(separator: ", "))); not guessing"
        case "not-listed-yet":
            return "not listed yet (awaiting the admin quorum's approval?); 'api-user list' shows it once it is"
        default:
            return "unknown (the user list could not be read)"
        }
    }
}
