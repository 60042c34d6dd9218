import PKCS11

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
