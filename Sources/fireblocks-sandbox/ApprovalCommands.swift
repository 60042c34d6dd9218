import ArgumentParser
import FireblocksAPI
import FireblocksSandbox
import Foundation

/// `fireblocks-sandbox approvals add|approve`: approval requests made and decided from the
/// Console's side, in the stand-in's state file.
struct ApprovalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "Add approval requests for API users' approval keys, or approve one as the Console's quorum.",
        subcommands: [ApprovalsAddCommand.self, ApprovalsApproveCommand.self]
    )
}

struct ApprovalsAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a pending approval request; prints its id.",
        discussion: """
            Its requestPayload is written as a backend might: its own key order, a space
            after each colon, and --data exactly as given (whitespace included), so a
            client that re-serializes the payload before signing is refused.

            Example:
              fireblocks-sandbox approvals add --type TAG_UPDATE \\
                  --data '{"tagId": "t-1", "name":"hot"}' --expires-in 10m \\
                  --state sandbox.json
            """
    )

    @Option(help: ArgumentHelp("The request type (requestType), e.g. TAG_UPDATE.", valueName: "type"))
    var type: String

    @Option(help: ArgumentHelp("requestData: JSON text, kept byte for byte.", valueName: "json"))
    var data: String = "{}"

    @Option(name: .customLong("expires-in"), help: ArgumentHelp("Lifetime (30s, 10m, 1h); negative is not allowed, 0s makes it expired.", valueName: "duration"))
    var expiresIn = "10m"

    @Option(help: "Approvals needed (distinct API users).")
    var threshold = 1

    @Option(help: ArgumentHelp("The stand-in's state file.", valueName: "path"))
    var state: String

    func validate() throws {
        guard !type.isEmpty, type.count <= 128, type.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }) else {
            throw ValidationError("--type is letters, digits and '_' (1 to 128)")
        }
        guard (1...100).contains(threshold) else { throw ValidationError("--threshold must be 1 to 100") }
        guard data.utf8.count <= 64 * 1024, (try? JSONSerialization.jsonObject(with: Data(data.utf8), options: [.fragmentsAllowed])) != nil else {
            throw ValidationError("--data must be JSON text of at most 64 KiB")
        }
    }

    func run() throws {
        let lifetime = try DurationText.seconds(expiresIn, flag: "--expires-in")
        var added: String?
        try StateFileEdit.edit(state) { state in
            guard let record = state.addApproval(type: type, requestDataJSON: data, now: Date(), lifetime: lifetime, threshold: threshold,
                                                 limit: SandboxLimits().approvals) else {
                throw SandboxError("the stand-in keeps at most \(SandboxLimits().approvals) approval requests and every one is open")
            }
            added = record.id
            return "added approval request \(record.id) (\(type), expires in \(expiresIn))"
        }
        if let added { FileHandle.standardOutput.write(Data((added + "\n").utf8)) }
    }
}

struct ApprovalsApproveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve an open approval request as the workspace's quorum in the Console (e.g. a key registration).",
        discussion: """
            Example:
              fireblocks-sandbox approvals approve 5e0c…-… --state sandbox.json
            """
    )

    @Argument(help: "The approval request's id.")
    var id: String

    @Option(help: ArgumentHelp("The stand-in's state file.", valueName: "path"))
    var state: String

    func run() throws {
        try StateFileEdit.edit(state) { state in
            guard let record = state.approveFromConsole(id, now: Date()) else {
                throw SandboxError("no open approval request with id '\(id.prefix(128))' in the state file")
            }
            return "approved \(record.id) (\(record.type))"
        }
    }
}
