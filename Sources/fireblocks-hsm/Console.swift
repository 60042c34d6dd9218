import FireblocksHSM
import Foundation
import Synchronization
import TokenKeys
import PKCS11

/// Where the command line writes: results on stdout, everything else on stderr. As the use
/// cases' observer, it shows their notes on stderr, a spinner for slow steps, and prompts for
/// PINs on the terminal.
struct Console: OperationObserver {
    init() {}

    func note(_ message: String) { diagnostic(message) }

    func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R {
        try Progress.run(description, console: self, work)
    }

    /// Writes a line to standard error (warnings, progress, errors). The line may carry text
    /// from outside (an API's message, a request id), so it is sanitised: one line, no control
    /// characters, cut when huge.
    func diagnostic(_ line: String) {
        FileHandle.standardError.write(Data((TerminalText.sanitized(line) + "\n").utf8))
    }

    /// Writes text to standard output (results).
    func output(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Writes bytes to standard output.
    func output(bytes: [UInt8]) {
        FileHandle.standardOutput.write(Data(bytes))
    }

    var standardInputIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }
    var standardOutputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Asks a yes/no question on the terminal; false unless the answer is y or yes. Nil when
    /// standard input is not a terminal (the caller then needs an explicit flag).
    func confirm(_ question: String) -> Bool? {
        guard standardInputIsTerminal else { return nil }
        FileHandle.standardError.write(Data((question + " [y/N] ").utf8))
        guard let answer = readLine(strippingNewline: true) else { return false }
        return ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased())
    }

    /// A PIN prompter on the terminal, or nil when standard input is not one.
    var pinPrompter: (any PINPrompter)? {
        standardInputIsTerminal ? TerminalPINPrompter() : nil
    }
}

/// Reads a PIN from the terminal on standard input with echo off; the prompt goes to stderr.
struct TerminalPINPrompter: PINPrompter {
    init() {}

    func readPIN(prompt: String) throws(TokenKeysError) -> PIN {
        FileHandle.standardError.write(Data(prompt.utf8))
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
            FileHandle.standardError.write(Data("\(message)…\n".utf8))
            return
        }
        let thread = Thread { [self] in
            let frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
            var frame = 0
            while !done.withLock({ $0 }) {
                let seconds = Int(Date().timeIntervalSince(started))
                FileHandle.standardError.write(Data("\r\(frames[frame % frames.count]) \(message) (\(seconds)s)".utf8))
                frame += 1
                usleep(100_000)
            }
            finished.signal()
        }
        thread.start()
    }

    private func stop() {
        done.withLock { $0 = true }
        guard interactive else { return }
        finished.wait()  // the spinner has written its last frame
        let seconds = String(format: "%.1f", Date().timeIntervalSince(started))
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(message): done in \(seconds)s\n".utf8))
    }
}
