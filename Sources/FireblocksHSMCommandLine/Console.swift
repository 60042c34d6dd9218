import Dispatch
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import Synchronization
import TokenKeys
import PKCS11

/// Where the command line writes: results on stdout, everything else on stderr. As the use
/// cases' observer, it shows their notes on stderr, a spinner for slow steps, and prompts for
/// PINs on the terminal.
package struct Console: OperationObserver {
    package init() {}

    package func note(_ message: String) { diagnostic(message) }

    package func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R {
        try Progress.run(description, console: self, work)
    }

    /// Writes a line to standard error (warnings, progress, errors). The line may carry text
    /// from outside (an API's message, a request id), so it is sanitised: one line, no control
    /// characters, cut when huge.
    package func diagnostic(_ line: String) {
        Self.write(Array((TerminalText.sanitized(line) + "\n").utf8), to: STDERR_FILENO)
    }

    /// Writes bytes to standard error as they are (terminal control the caller composed).
    func diagnostic(bytes: [UInt8]) {
        Self.write(bytes, to: STDERR_FILENO)
    }

    /// Writes text to standard output (results).
    package func output(_ text: String) {
        Self.write(Array(text.utf8), to: STDOUT_FILENO)
    }

    /// Writes bytes to standard output.
    func output(bytes: [UInt8]) {
        Self.write(bytes, to: STDOUT_FILENO)
    }

    var standardInputIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }
    var standardOutputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Asks a yes/no question on the terminal; false unless the answer is y or yes. Nil when
    /// standard input is not a terminal (the caller then needs an explicit flag).
    func confirm(_ question: String) -> Bool? {
        guard standardInputIsTerminal else { return nil }
        diagnostic(bytes: Array((question + " [y/N] ").utf8))
        guard let answer = readLine(strippingNewline: true) else { return false }
        let word = answer.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
        return ["y", "yes"].contains(String(word).lowercased())
    }

    /// Writes all of `bytes` to a descriptor, through partial writes and interruptions. A
    /// failure (a closed pipe, a full disk) ends the write: there is nowhere left to report it.
    static func write(_ bytes: [UInt8], to descriptor: Int32) {
        _ = writeAll(bytes, to: descriptor)
    }

    /// Writes all of `bytes` to a descriptor, through partial writes and interruptions; 0 when
    /// all were written, else the `errno` of the write that failed (`EPIPE`: the reader left,
    /// once SIGPIPE is ignored).
    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Int32 {
        bytes.withUnsafeBytes { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return 0 }
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor, base + offset, buffer.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { return written == 0 ? EIO : errno }
                offset += written
            }
            return 0
        }
    }

    /// A PIN prompter on the terminal, or nil when standard input is not one.
    package var pinPrompter: (any PINPrompter)? {
        standardInputIsTerminal ? TerminalPINPrompter() : nil
    }
}

/// Reads a PIN from the terminal on standard input with echo off; the prompt goes to stderr.
struct TerminalPINPrompter: PINPrompter {
    init() {}

    /// `PINPrompter`'s contract: a prompt that cannot be shown is TokenKeys' `pinUnavailable`.
    func readPIN(prompt: String) throws(TokenKeysError) -> PIN {
        Console.write(Array(prompt.utf8), to: STDERR_FILENO)
        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else {
            throw TokenKeysError(.pinUnavailable, "cannot read the terminal settings to prompt for a PIN")
        }
        var silent = original
        silent.c_lflag &= ~tcflag_t(ECHO)
        silent.c_lflag |= tcflag_t(ECHONL)
        _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
        defer { _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &original) }

        var buffer = [UInt8](repeating: 0, count: 256)
        defer { buffer.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } } }
        var length = 0
        while length < buffer.count {
            var byte: UInt8 = 0
            let count = read(STDIN_FILENO, &byte, 1)
            if count < 0, errno == EINTR { continue }
            if count <= 0 || byte == UInt8(ascii: "\n") { break }
            buffer[length] = byte
            length += 1
        }
        if length > 0, buffer[length - 1] == UInt8(ascii: "\r") { length -= 1 }
        return PIN(bytes: buffer[0..<length])
    }
}

/// Shows that a slow token operation is under way: a spinner with elapsed seconds on a
/// terminal, one line otherwise (so CI logs stay readable).
final class Progress: Sendable {
    private let message: String
    private let interactive: Bool
    private let done = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)
    private let started = Date()

    private init(message: String, interactive: Bool) {
        self.message = message
        self.interactive = interactive
    }

    /// Runs `work` while showing `message`.
    static func run<R>(_ message: String, console: Console = Console(), _ work: () throws -> R) rethrows -> R {
        let progress = Progress(message: message, interactive: console.standardErrorIsTerminal)
        progress.start()
        defer { progress.stop() }
        return try work()
    }

    private func start() {
        guard interactive else {
            Console.write(Array("\(message)…\n".utf8), to: STDERR_FILENO)
            return
        }
        DispatchQueue.global(qos: .utility).async { [self] in
            let frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
            var frame = 0
            while !done.withLock({ $0 }) {
                let seconds = Int(Date().timeIntervalSince(started))
                Console.write(Array("\r\(frames[frame % frames.count]) \(message) (\(seconds)s)".utf8), to: STDERR_FILENO)
                frame += 1
                usleep(100_000)
            }
            finished.signal()
        }
    }

    private func stop() {
        done.withLock { $0 = true }
        guard interactive else { return }
        finished.wait()  // the spinner has written its last frame
        let seconds = DecimalText.fixed(Date().timeIntervalSince(started), places: 1)
        Console.write(Array("\r\u{1B}[2K\(message): done in \(seconds)s\n".utf8), to: STDERR_FILENO)
    }
}
