import ErrorShape
import PKCS11
import HexEncoding

/// Finds key pairs on a token and reads what they are.
public enum KeyStore {
    /// The key pair the selector names, judged but not yet required to meet the policy
    /// (`key show` shows failing keys; commands that use a key call ``findUsable(_:in:policy:)``).
    public static func find(_ selector: KeySelector, in session: Session, policy: KeyPolicy = .signingKey) throws -> TokenKeyPair {
        let candidates = try session.findObjects([.class(.privateKey)] + selector.searchTemplate)
        let token = try session.slot.tokenInfo()
        switch candidates.count {
        case 1:
            return try load(privateKey: candidates[0], in: session, token: token, policy: policy)
        case 0:
            let others = try session.findObjects(selector.searchTemplate)
            if !others.isEmpty {
                throw TokenKeysError(.keyNotFound, "no private key '\(selector)' on token '\(token.label)': it has \(others.count) other object(s) with that name but no private key (only a public half, left by an interrupted generation? or is the PIN for the right token?)", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber, keyLabel: "\(selector)"))
            }
            throw TokenKeysError(.keyNotFound, "no private key '\(selector)' on token '\(token.label)'", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber, keyLabel: "\(selector)"))
        default:
            let pairs = try candidates.map { try load(privateKey: $0, in: session, token: token, policy: policy) }
            let ids = pairs.map { $0.id.isEmpty ? "(no id)" : hex($0.id) }.joined(separator: ", ")
            throw TokenKeysError(.ambiguousKey, "\(candidates.count) private keys match '\(selector)' on token '\(token.label)' (ids \(ids))", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber, keyLabel: "\(selector)"))
        }
    }

    /// Like ``find(_:in:policy:)``, and refuses a key that fails the policy, naming the failing
    /// attributes. Every command that signs goes through here.
    public static func findUsable(_ selector: KeySelector, in session: Session, policy: KeyPolicy = .signingKey) throws -> TokenKeyPair {
        let pair = try find(selector, in: session, policy: policy)
        try requireMeetsPolicy(pair)
        return pair
    }

    /// Throws `policyViolation` unless the pair meets the policy and has a usable public key.
    public static func requireMeetsPolicy(_ pair: TokenKeyPair) throws {
        if case .failsToMeetPolicy(let failures) = pair.provenance.verdict {
            let list = failures.map(\.description).joined(separator: "; ")
            throw TokenKeysError(.policyViolation, "key '\(pair.label)' on token '\(pair.token.label)' fails the key policy and is not used: \(list)")
        }
        if pair.publicKey == nil {
            throw TokenKeysError(.notAnRSAKey, "key '\(pair.label)' on token '\(pair.token.label)' has no readable RSA public key (CKA_MODULUS/CKA_PUBLIC_EXPONENT)")
        }
    }

    /// Every RSA private key on the token (the API keys), judged. The EC audit key is not one.
    public static func list(in session: Session, policy: KeyPolicy = .signingKey) throws -> [TokenKeyPair] {
        let token = try session.slot.tokenInfo()
        return try session.findObjects([.class(.privateKey), .keyType(.rsa)])
            .map { try load(privateKey: $0, in: session, token: token, policy: policy) }
            .sorted { ($0.label, hex($0.id)) < ($1.label, hex($1.id)) }
    }

    /// Refuses a label or id that any object on the token already has. A label held only by
    /// public keys (what an interrupted generation leaves) is `orphanedPublicKey`, so the caller
    /// can say how to clear it.
    public static func requireUnused(label: String?, id: [UInt8]?, in session: Session) throws {
        let token = try session.slot.tokenInfo()
        if let label {
            let objects = try session.findObjects([.label(label)])
            if !objects.isEmpty {
                let publicOnly = try session.findObjects([.label(label), .class(.publicKey)]).count == objects.count
                if publicOnly {
                    throw TokenKeysError(.orphanedPublicKey, "token '\(token.label)' has \(objects.count == 1 ? "a public key" : "\(objects.count) public keys") labelled '\(label)' without a private key (left by an interrupted key generation?)", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber, keyLabel: label))
                }
                throw TokenKeysError(.keyExists, "token '\(token.label)' already has an object labelled '\(label)' (labels must be unique)", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber, keyLabel: label))
            }
        }
        if let id, !(try session.findObjects([.id(id)]).isEmpty) {
            throw TokenKeysError(.keyExists, "token '\(token.label)' already has an object with id \(hex(id))", facts: ErrorFacts(tokenLabel: token.label, tokenSerial: token.serialNumber))
        }
    }

    /// Reads a private key and its public counterpart and judges them.
    static func load(privateKey: ObjectHandle, in session: Session, token: TokenInfo, policy: KeyPolicy) throws -> TokenKeyPair {
        let privateTypes = KeyPolicy.privateKeyAttributesToRead + [.label, .id, .modulus, .publicExponent]
        let privateAttributes = try session.attributes(privateTypes, of: privateKey)
        let label: String
        if case .value(.label(let value))? = privateAttributes[.label] { label = value } else { label = "" }
        let id = privateAttributes[.id]?.attribute?.bytesValue ?? []

        // The public key object: same id, or same label when the key has no id.
        let publicTemplate: [Attribute] = id.isEmpty ? [.class(.publicKey), .label(label)] : [.class(.publicKey), .id(id)]
        let publicObject = try session.findObjects(publicTemplate).first
        let publicTypes = KeyPolicy.publicKeyAttributesToRead + [.modulus, .publicExponent]
        let publicAttributes = try publicObject.map { try session.attributes(publicTypes, of: $0) } ?? [:]

        let modulus = privateAttributes[.modulus]?.attribute?.bytesValue ?? publicAttributes[.modulus]?.attribute?.bytesValue
        let exponent = privateAttributes[.publicExponent]?.attribute?.bytesValue
            ?? publicAttributes[.publicExponent]?.attribute?.bytesValue
        var publicKey: TokenRSAPublicKey?
        if let modulus, let exponent {
            publicKey = try? TokenRSAPublicKey(modulus: modulus, publicExponent: exponent)
        }
        let modulusBits = modulus.map { UInt(Array($0.drop { $0 == 0 }).count * 8) }
        let verdict = policy.evaluate(privateKey: privateAttributes, modulusBits: modulusBits)

        return TokenKeyPair(
            label: label, id: id, privateKey: privateKey, publicKeyObject: publicObject,
            publicKey: publicKey,
            provenance: KeyProvenance(privateKeyAttributes: privateAttributes,
                                      publicKeyAttributes: publicAttributes, verdict: verdict),
            token: token)
    }
}
