import PKCS11
#if canImport(Glibc)
import Glibc
#endif

/// A token found in a module.
public struct LocatedToken: Sendable {
    /// The slot.
    public let slot: Slot
    /// The slot info.
    public let slotInfo: SlotInfo
    /// The info.
    public let info: TokenInfo

    /// A URI naming this token precisely (token, manufacturer, model, serial).
    public var uri: PKCS11URI {
        var uri = PKCS11URI()
        uri.token = info.label
        uri.manufacturer = info.manufacturer
        uri.model = info.model
        uri.serial = info.serialNumber
        return uri
    }
}

/// Finds tokens by label or URI.
public enum TokenLocator {
    /// Every slot with a token present, with its token description.
    public static func tokens(in module: PKCS11Module) throws -> [LocatedToken] {
        try module.slots(withTokenPresent: true).map { slot in
            LocatedToken(slot: slot, slotInfo: try slot.info(), info: try slot.tokenInfo())
        }
    }

    /// Loads the module and finds exactly one initialised token matching the selector, as
    /// ``locate(_:in:)``; when none matches, the module is initialised once more, 20 ms later,
    /// and asked again.
    ///
    /// SoftHSM reads its tokens at `C_Initialize`, and it rewrites a token's file in place on
    /// every login: a process that starts while another logs in can read that token as
    /// uninitialised until its next initialisation (SoftHSMv2 issue 757). Only this load's
    /// own initialisation is undone (the module is finalised when its last reference goes); a
    /// module another part of the process holds is asked again as it is.
    public static func load(_ location: ModuleLocation, locating selector: TokenSelector) throws -> (module: PKCS11Module, token: LocatedToken) {
        do {
            let module = try PKCS11Module.load(location)
            return (module, try locate(selector, in: module))
        } catch let error as TokenKeysError where error.code == .noTokenMatches {
            usleep(20_000)
        }
        let module = try PKCS11Module.load(location)
        return (module, try locate(selector, in: module))
    }

    /// Exactly one initialised token matching the selector.
    ///
    /// Errors list the candidates: none → every token the module has; several → the matching
    /// ones, each with a URI that selects it alone.
    public static func locate(_ selector: TokenSelector, in module: PKCS11Module) throws -> LocatedToken {
        let all = try tokens(in: module)
        let moduleInfo = try? module.info()
        let matching = all.filter {
            $0.info.flags.contains(.tokenInitialized)
                && selector.matches(token: $0.info, slot: $0.slotInfo, slotID: $0.slot.id, module: moduleInfo)
        }
        switch matching.count {
        case 1:
            return matching[0]
        case 0:
            let available = all.filter { $0.info.flags.contains(.tokenInitialized) }.map { "'\($0.info.label)'" }
            let list = available.isEmpty ? "the module has no initialised token" : "available: " + available.joined(separator: ", ")
            throw TokenKeysError(.noTokenMatches, "no token matches '\(selector)' in module \(module.location) (\(list))")
        default:
            let list = matching.map { $0.uri.description }.joined(separator: " | ")
            throw TokenKeysError(.ambiguousToken, "\(matching.count) tokens match '\(selector)': \(list)")
        }
    }
}
