import ArgumentParser
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys

/// `--module`: shared by every command that talks to a module.
struct ModuleOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "PKCS#11 module: a file path or a p11-kit module name such as softhsm2 (env \(TokenEnvironment.module); default: p11-kit's proxy, i.e. every registered module).",
        valueName: "path|name"))
    var module: String?

    /// The module to load: the flag, else the environment, else p11-kit's proxy.
    var location: ModuleLocation {
        get throws {
            try TokenTargetResolution.module(flag: module, environment: ProcessInfo.processInfo.environment)
        }
    }
}

/// `--module`, `--token`, `--pin-source`: shared by every command that uses a token.
package struct TokenOptions: ParsableArguments {
    package init() {}

    @OptionGroup var moduleOptions: ModuleOptions

    @Option(help: ArgumentHelp(
        "Token label, or an RFC 7512 URI such as 'pkcs11:token=fb;serial=…' (env \(TokenEnvironment.token)).",
        valueName: "label|uri"))
    var token: String?

    @Option(name: .customLong("pin-source"), help: ArgumentHelp(
        "Where the user PIN comes from: prompt, env:NAME or file:PATH (env \(TokenEnvironment.pinSource); default: a prompt when stdin is a terminal). There is no flag that takes the PIN itself.",
        valueName: "source"))
    var pinSource: String?

    @Option(help: ArgumentHelp(
        "Take defaults from this profile of the configuration file (env \(ProfileStore.profileVariable); see docs/profiles.md).",
        valueName: "name"))
    var profile: String?

    /// The flags' own values (the token selector or URI, a URI's pin-value, the module against
    /// a URI's, the PIN source's syntax), checked where they are parsed: by `fireblocks-hsm`,
    /// before a network command is handed over. Nothing is read: not the PIN, not a profile,
    /// not the environment (whose values are checked when they are resolved).
    package func validate() throws {
        do {
            _ = try TokenTargetResolution.resolve(module: moduleOptions.module, token: token, key: nil, pinSource: pinSource,
                                                  environment: [:], profile: nil)
        } catch let error as CommandLineError {
            throw ValidationError(error.message)
        } catch let error as TokenKeysError {
            throw ValidationError(ErrorReport(error).message)
        } catch let error as PKCS11URIError {
            throw ValidationError(ErrorReport(error).message)
        }
    }

    /// The profile in effect, if any.
    package func loadProfile() throws -> Profile? {
        try ProfileStore.load(named: profile, environment: ProcessInfo.processInfo.environment)
    }

    /// Resolves these options (and `--key`, when the command has one) with the environment and
    /// `profile`, the one ``loadProfile()`` returned (nil: there is none). A command that also
    /// needs the profile elsewhere loads it once and passes it to both.
    package func target(key: String? = nil, profile: Profile?) throws -> TokenTarget {
        try TokenTargetResolution.resolve(module: moduleOptions.module, token: token, key: key, pinSource: pinSource,
                                environment: ProcessInfo.processInfo.environment, profile: profile)
    }

    /// The same, loading the profile: for a command that needs it nowhere else.
    func target(key: String? = nil) throws -> TokenTarget {
        try target(key: key, profile: try loadProfile())
    }
}

/// `--key`.
package struct KeyOptions: ParsableArguments {
    package init() {}

    @Option(help: ArgumentHelp(
        "Key label, or a URI such as 'pkcs11:object=api-user-1;id=%01' (may name the token too).",
        valueName: "label|uri"))
    package var key: String?

    /// The key selector's syntax and a URI's pin-value, checked before any hand-over.
    package func validate() throws {
        guard let key else { return }
        do {
            if let uri = try KeySelector(argument: key).uri, uri.pinValue != nil {
                throw ValidationError("a pkcs11: URI with pin-value puts the PIN in the process list and shell history; use pin-source=env:NAME or pin-source=file:PATH instead")
            }
        } catch let error as PKCS11URIError {
            throw ValidationError(ErrorReport(error).message)
        } catch let error as TokenKeysError {
            throw ValidationError(ErrorReport(error).message)
        }
    }
}

/// `--json`.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON document on stdout instead of text.")
    var json = false

    /// Prints a report as JSON or as text.
    func emit<Report: Encodable>(_ report: Report, text: (Report) -> String) throws {
        Console().output(json ? try JSONOutput.encode(report) : text(report))
    }
}

/// Where the tool keeps its records and locks, and how long it waits for another run.
struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Where onboarding records, idempotency records and locks are kept (env \(APIEnvironment.stateDirectory); default $XDG_STATE_HOME/fireblocks-hsm).", valueName: "path"))
    var stateDirectory: String?

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Seconds to wait while another run works on the same key label (0: fail at once).", valueName: "seconds"))
    var lockTimeout: Double = 300

    func validate() throws {
        guard lockTimeout.isFinite, (0...86400).contains(lockTimeout) else {
            throw ValidationError("'--lock-timeout' must be 0 to 86400 seconds")
        }
    }

    var directory: URL {
        APITargetResolution.stateDirectoryURL(flag: stateDirectory, environment: ProcessInfo.processInfo.environment)
    }
}
