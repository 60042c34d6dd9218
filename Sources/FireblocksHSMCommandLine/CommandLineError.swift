/// An input of the command line that cannot be used: a flag's value, a profile, an environment
/// variable (exit 2). The command line's own error, so its message may name flags; the
/// libraries' errors never do (``ErrorReport`` adds that advice to theirs).
package struct CommandLineError: Error, CustomStringConvertible {
    /// One line, naming the flag or file to change.
    package let message: String
    /// The exit class: usage (2) unless it is about a file (3) or the trail's integrity (11).
    let status: ExitStatus

    package init(_ message: String) { self.init(message, status: .usage) }

    /// For the companion's runners: a usage error, or one about a file or the tool's state.
    package enum ExitClass: Sendable { case usage, io }

    package init(_ message: String, exitClass: ExitClass) {
        self.init(message, status: exitClass == .usage ? .usage : .fileError)
    }

    init(_ message: String, status: ExitStatus) {
        self.message = message
        self.status = status
    }

    package var description: String { message }
}
