import DurableFiles
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import TokenKeys

/// A named set of defaults from the configuration file. Flags win over the environment, which
/// wins over the profile. A profile never holds a PIN, only where one comes from.
package struct Profile: Codable, Equatable, Sendable {
    var module: String?
    var token: String?
    /// The key that signs API requests (for `onboard`: the admin key).
    package var key: String?
    var apiKey: String?
    /// sandbox, us, eu or eu2.
    var env: String?
    var baseURL: String?
    var pinSource: String?
    /// Where the audit logs are kept.
    var auditDir: String?

    init(module: String? = nil, token: String? = nil, key: String? = nil, apiKey: String? = nil,
                env: String? = nil, baseURL: String? = nil, pinSource: String? = nil, auditDir: String? = nil) {
        self.module = module
        self.token = token
        self.key = key
        self.apiKey = apiKey
        self.env = env
        self.baseURL = baseURL
        self.pinSource = pinSource
        self.auditDir = auditDir
    }

    static let fieldNames: Set<String> = ["module", "token", "key", "apiKey", "env", "baseURL", "pinSource", "auditDir"]
}

/// Reads profiles from `$FIREBLOCKS_HSM_CONFIG`, else `$XDG_CONFIG_HOME/fireblocks-hsm/config.json`,
/// else `~/.config/fireblocks-hsm/config.json`.
///
/// ```json
/// { "profiles": { "sandbox-admin": { "module": "softhsm2", "token": "fb", "key": "admin",
///     "apiKey": "…", "env": "sandbox", "pinSource": "env:HSM_PIN" } } }
/// ```
///
/// A profile can name a module file, i.e. code this tool will load, so the file (and its
/// directory) must belong to the user and not be writable by anyone else.
enum ProfileStore {
    static let environmentVariable = "FIREBLOCKS_HSM_CONFIG"
    static let profileVariable = "FIREBLOCKS_HSM_PROFILE"

    /// The configuration file's path.
    static func path(environment: [String: String]) -> String {
        if let explicit = environment[environmentVariable], !explicit.isEmpty { return explicit }
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path) + "/.config"
        return base + "/fireblocks-hsm/config.json"
    }

    /// The profile to apply: `--profile`, else `FIREBLOCKS_HSM_PROFILE`, else one named
    /// `default` if the file has it; nil when none applies.
    static func load(named flag: String?, environment: [String: String]) throws -> Profile? {
        let name = flag ?? environment[profileVariable].flatMap { $0.isEmpty ? nil : $0 }
        let path = path(environment: environment)
        // Only a file that is not there means "no profiles": one that cannot be examined is
        // refused by the trust check below, never taken for absent.
        var status = stat()
        if lstat(path, &status) != 0, errno == ENOENT {
            if let name {
                throw CommandLineError("profile '\(name)' requested but there is no configuration file at \(path)")
            }
            return nil
        }
        let bytes = try readTrusted(path)
        guard case .object(let root)? = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            throw CommandLineError("configuration file \(path) is not a JSON object")
        }
        var profiles: [String: JSONValue] = [:]
        if case .object(let found)? = root["profiles"] { profiles = found }
        let chosen = name ?? (profiles["default"] != nil ? "default" : nil)
        guard let chosen else { return nil }
        guard case .object(let raw)? = profiles[chosen] else {
            let known = profiles.keys.sorted().joined(separator: ", ")
            throw CommandLineError("no profile '\(chosen)' in \(path) (profiles: \(known.isEmpty ? "none" : known))")
        }
        for key in raw.keys where !Profile.fieldNames.contains(key) {
            if key.lowercased().contains("pin") {
                throw CommandLineError("profile '\(chosen)' in \(path) has '\(key)': PINs are never stored in profiles; use \"pinSource\": \"env:NAME\" or \"file:PATH\"")
            }
            throw CommandLineError("profile '\(chosen)' in \(path) has an unknown field '\(key)' (known: \(Profile.fieldNames.sorted().joined(separator: ", ")))")
        }
        do {
            let profile = try JSONDecoder().decode(Profile.self, from: JSONEncoder().encode(JSONValue.object(raw)))
            if let source = profile.pinSource { _ = try PINSource(parsing: source, origin: "pinSource") }
            return profile
        } catch let error as TokenKeysError {
            throw CommandLineError("profile '\(chosen)': \(error.reason)")
        } catch {
            throw CommandLineError("profile '\(chosen)' in \(path): every field must be a string")
        }
    }

    /// The file a profile comes from configures what runs (it can name a module to load), so it
    /// is held to ``TrustedFile``'s rule, as modules and the companion are, and read from the
    /// file that was checked.
    private static func readTrusted(_ path: String) throws -> [UInt8] {
        do {
            return try TrustedFile.read(path, for: .configures, limit: 1 << 20)
        } catch {
            let remedy = TrustedFile.remedy(for: error).map { "; fix it with: \($0)" } ?? ""
            throw CommandLineError("configuration file \(path): \(error); a profile can name a module to load, so it must be yours and writable by nobody else\(remedy)")
        }
    }
}
