import ArgumentParser
import DurableFiles
import FireblocksSandbox
import Foundation

/// Changes the stand-in's state file (a running stand-in picks the change up on its next
/// request), under the file's lock.
enum StateFileEdit {
    static func edit(_ path: String, _ change: (inout SandboxState) throws -> String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SandboxError(.file, "no state file at \(path) (the one given to 'serve --state')")
        }
        let lock = try FileLock.acquire(path + ".lock", timeout: 10, note: "pid \(getpid()): fireblocks-sandbox state edit")
        defer { lock.release() }
        let url = URL(fileURLWithPath: path)
        var state = try SandboxState.load(from: url)
        let message = try change(&state)
        try state.save(to: url)
        Diagnostics.line(message)
    }

    static func index(of nameOrID: String, in state: SandboxState) throws -> Int {
        let matches = state.users.indices.filter { state.users[$0].id == nameOrID || state.users[$0].name == nameOrID }
        guard let first = matches.first else { throw SandboxError("no API user named or with id '\(nameOrID)' in the state file") }
        guard matches.count == 1 else { throw SandboxError("\(matches.count) API users are named '\(nameOrID)'; give the id") }
        return first
    }
}

struct ApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve an API user's creation, as the workspace's admin quorum does in the Console.",
        discussion: """
            For a stand-in started with --auto-approve-after never (or a long delay): the
            user becomes visible with the stand-in's --initial-status.

            Example:
              fireblocks-sandbox approve ci-bot --state sandbox.json
            """
    )

    @Argument(help: "The user's name or id.")
    var user: String

    @Option(help: ArgumentHelp("The stand-in's state file.", valueName: "path"))
    var state: String

    func run() throws {
        try StateFileEdit.edit(state) { state in
            let index = try StateFileEdit.index(of: user, in: state)
            let before = state.users[index].isVisible
            guard let approved = state.approve(state.users[index].id, now: Date()) else { throw SandboxError("no such user") }
            return before ? "\(approved.name) was already approved (\(approved.status))" : "approved \(approved.name): \(approved.status)"
        }
    }
}

struct SetUserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-user",
        abstract: "Disable, enable or remove an API user in the stand-in's state (to test what waits for it).",
        discussion: """
            Examples:
              fireblocks-sandbox set-user ci-bot --disable --state sandbox.json
              fireblocks-sandbox set-user ci-bot --remove --state sandbox.json
            """
    )

    @Argument(help: "The user's name or id.")
    var user: String

    @Option(help: ArgumentHelp("The stand-in's state file.", valueName: "path"))
    var state: String

    @Flag(help: "Disable the user.") var disable = false
    @Flag(help: "Enable the user.") var enable = false
    @Flag(help: "Remove the user.") var remove = false

    func validate() throws {
        guard [disable, enable, remove].filter({ $0 }).count == 1 else {
            throw ValidationError("give one of --disable, --enable, --remove")
        }
    }

    func run() throws {
        try StateFileEdit.edit(state) { state in
            let index = try StateFileEdit.index(of: user, in: state)
            let name = state.users[index].name
            if remove {
                state.users.remove(at: index)
                return "removed \(name)"
            }
            state.users[index].enabled = enable
            return "\(enable ? "enabled" : "disabled") \(name)"
        }
    }
}
