import ErrorShape
/// The lines of a text file as people write them, whatever their editor did: a UTF-8 byte-order
/// mark at the start is dropped, lines end in `\n` or `\r\n`, and spaces and tabs at a line's
/// end are removed. What cannot be meant as text is refused with its line number (the line
/// itself is not quoted: it may hold a secret): bytes that are not UTF-8, a `\r` inside a line,
/// any other control character.
public enum TextLines {
    /// One line: its number (from 1) and its text.
    public struct Line: Sendable, Equatable {
        /// 1 for the first line.
        public let number: Int
        /// The text, without its line end or trailing blanks.
        public let text: String
    }

    /// Why a file's text was refused.
    public struct Refusal: LibraryError, Equatable {
        /// One code: a line is not text as people write it.
        public struct Code: ErrorCode {
            public let name: String
            private init(_ name: String) { self.name = name }
            /// Not UTF-8, or a control character in the line.
            public static let notText = Code("notText")
        }
        public var code: Code { .notText }
        /// The line (from 1).
        public let line: Int
        /// What is wrong with it.
        public let reason: String
        public let location: ErrorLocation
        /// `line N: reason`.
        public var description: String { "line \(line): \(reason)" }

        init(line: Int, reason: String, file: String = #fileID, sourceLine: UInt = #line) {
            self.line = line
            self.reason = reason
            self.location = ErrorLocation(file: file, line: sourceLine)
        }

        /// Equal when the line and reason are.
        public static func == (lhs: Self, rhs: Self) -> Bool { lhs.line == rhs.line && lhs.reason == rhs.reason }
    }

    /// Splits `bytes` into lines (a final line end is optional).
    public static func parse(_ bytes: some BidirectionalCollection<UInt8>) throws(Refusal) -> [Line] {
        // Split where the bytes are (no copy of them is left behind: they may be secrets).
        let content = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes.dropFirst(3) : bytes[...]
        var lines: [Line] = []
        var pieces = content.split(separator: 0x0A, omittingEmptySubsequences: false)
        if pieces.last?.isEmpty == true { pieces.removeLast() }
        for (index, piece) in pieces.enumerated() {
            var line = piece
            if line.last == 0x0D { line.removeLast() }
            while let last = line.last, last == 0x20 || last == 0x09 { line.removeLast() }
            guard let text = String(validating: line, as: UTF8.self) else {
                throw Refusal(line: index + 1, reason: "not UTF-8 text")
            }
            if text.unicodeScalars.contains(where: { $0 == "\r" }) {
                throw Refusal(line: index + 1, reason: "a carriage return inside the line")
            }
            if text.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || (0x7F...0x9F).contains($0.value) || $0.value == 0xFEFF }) {
                throw Refusal(line: index + 1, reason: "a control character")
            }
            lines.append(Line(number: index + 1, text: text))
        }
        return lines
    }
}
