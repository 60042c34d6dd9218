@testable import FireblocksHSMCommandLine
import Testing

/// Text from a server printed on a terminal: escapes and forged lines made inert.
@Suite struct TerminalTextTests {
    static let key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1Q==\nAbCd+/9=\n-----END PUBLIC KEY-----\n"

    @Test func aPEMBlockKeepsItsLines() {
        #expect(TerminalText.pem(Self.key) == Self.key)
        #expect(TerminalText.pem(Self.key.replacingOccurrences(of: "\n", with: "\r\n")) == Self.key, "CRLF lines are PEM too")
    }

    @Test func anythingElseIsOneEscapedLine() {
        let forged = [
            Self.key + "Status           APPROVAL_API_KEY_STATUS_ENABLED\n",
            Self.key.replacingOccurrences(of: "AbCd+/9=", with: "Token key        approver-1"),
            Self.key.replacingOccurrences(of: "PUBLIC KEY-----\nMF", with: "PUBLIC KEY-----\n\u{1B}[2JMF"),
            "-----BEGIN -----\nAAAA\n-----END -----\n",
            "not a key\nId               forged\n",
            "",
        ]
        for text in forged {
            let shown = TerminalText.pem(text)
            #expect(shown.filter { $0 == "\n" }.count == 1 && shown.hasSuffix("\n"), "\(text.debugDescription) → \(shown.debugDescription)")
            #expect(!shown.unicodeScalars.contains("\u{1B}"))
        }
    }

    @Test func directionControlsAreShownAsEscapes() {
        for scalar in ["\u{202E}", "\u{2066}", "\u{200E}", "\u{200F}", "\u{061C}", "\u{2028}", "\u{1B}", "\u{9B}"] {
            let shown = TerminalText.sanitized("a\(scalar)b")
            #expect(!shown.contains(scalar) && shown.hasPrefix("a\\u{"), "\(shown.debugDescription)")
        }
    }
}
