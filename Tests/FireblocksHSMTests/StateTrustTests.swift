import APITestSupport
import FireblocksAPI
import FireblocksHSM
import Foundation
import Testing
import TokenKeys

/// The state directory holds what decides the next run (the onboarding records, the idempotency
/// records, the key labels' locks): state others could have written is refused before anything
/// is made or sent, as the audit trail's own state is, and it passes again once it is private.
@Suite("State others could write (use case)")
struct StateTrustTests {
    /// Each way someone else could have written the state, made on a state directory that
    /// exists; `undo` makes it private again.
    private func spoil(_ how: String, state: URL) throws -> (path: String, undo: () throws -> Void) {
        let manager = FileManager.default
        try manager.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let records = state.appendingPathComponent("onboarding.json").path
        let empty = Data(#"{"records":[],"version":2}"#.utf8)
        switch how {
        case "world-writable directory":
            chmod(state.path, 0o777)
            return (state.path, { chmod(state.path, 0o700) })
        case "world-writable locks":
            let locks = state.appendingPathComponent("locks").path
            try manager.createDirectory(atPath: locks, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            chmod(locks, 0o777)
            return (locks, { chmod(locks, 0o700) })
        case "another user's file":
            #expect(manager.createFile(atPath: records, contents: empty, attributes: [.posixPermissions: 0o600]))
            #expect(chown(records, 65534, 65534) == 0, "the tests run as root")
            return (records, { #expect(chown(records, getuid(), getgid()) == 0) })
        case "symlinked file":
            let elsewhere = state.deletingLastPathComponent().appendingPathComponent("elsewhere.json").path
            #expect(manager.createFile(atPath: elsewhere, contents: empty, attributes: [.posixPermissions: 0o600]))
            try manager.createSymbolicLink(atPath: records, withDestinationPath: elsewhere)
            return (records, { try manager.removeItem(atPath: records) })
        default:  // the idempotency records, a symbolic link
            let idempotency = state.appendingPathComponent("idempotency.json").path
            let elsewhere = state.deletingLastPathComponent().appendingPathComponent("elsewhere.json").path
            #expect(manager.createFile(atPath: elsewhere, contents: Data(#"{"records":[],"version":1}"#.utf8), attributes: [.posixPermissions: 0o600]))
            try manager.createSymbolicLink(atPath: idempotency, withDestinationPath: elsewhere)
            return (idempotency, { try manager.removeItem(atPath: idempotency) })
        }
    }

    @Test(arguments: ["world-writable directory", "world-writable locks", "another user's file", "symlinked file", "symlinked idempotency records"])
    func onboardingRefusesStateOthersCouldHaveWritten(how: String) async throws {
        try await UseCaseWorld.with("st-\(how.prefix(8).filter(\.isLetter))", sandbox: { _ in }) { world in
            let (path, undo) = try spoil(how, state: world.state)
            let request = try world.onboarding()
            do {
                _ = try await world.onboard(request)
                Issue.record("\(how): the onboarding ran")
            } catch {
                // The idempotency records are judged first (the FireblocksAPI layer's error), then
                // the locks and the onboarding records (this layer's).
                let (code, reason): (String, String)
                switch error {
                case let error as OperationError:
                    (code, reason) = (error.code.name, error.reason)
                    #expect(error.facts.path == path, "\(how): \(error.facts)")
                case let error as APIClientError:
                    (code, reason) = (error.code.name, error.reason)
                default:
                    (code, reason) = ("\(type(of: error))", "\(error)")
                }
                #expect(code == "untrustedState", "\(how): \(reason)")
                #expect(reason.contains(path) && reason.contains("cannot be trusted when others could have written"), "\(reason)")
                if how.hasPrefix("world-writable") { #expect(reason.contains("fix it with: chmod go-w '\(path)'"), "\(reason)") }
                if how == "another user's file" { #expect(reason.contains("fix it with: chown 0 '\(path)'"), "\(reason)") }
                if how.hasPrefix("symlinked") { #expect(reason.contains("is not a regular file"), "\(reason)") }
            }
            #expect(try world.privateKeyLabels() == ["admin"], "\(how): no key was made")
            #expect(world.users.isEmpty, "\(how): nothing was sent")

            try undo()
            let onboarded = try await world.onboard(request)
            #expect(onboarded.key == "generated" && world.users.count == 1, "\(how): private again, it runs")
        }
    }

    /// A state directory that does not exist yet is made private (0700), its records 0600.
    @Test func missingStateIsMadePrivate() async throws {
        try await UseCaseWorld.with("st-missing", sandbox: { _ in }) { world in
            #expect(!FileManager.default.fileExists(atPath: world.state.path))
            _ = try await world.onboard(try world.onboarding())
            func mode(_ path: String) throws -> Int? {
                try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            }
            #expect(try mode(world.state.path) == 0o700)
            #expect(try mode(world.state.appendingPathComponent("onboarding.json").path) == 0o600)
            #expect(try mode(world.state.appendingPathComponent("idempotency.json").path) == 0o600)
            #expect(try mode(world.state.appendingPathComponent("locks").path) == 0o700)
        }
    }
}
