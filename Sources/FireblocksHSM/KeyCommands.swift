import Foundation
import JOSE
import PKCS11
import TokenKeys

/// Formats `key export` writes.
public enum PublicKeyFormat: String, CaseIterable, Sendable {
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    case pem
    /// DER SubjectPublicKeyInfo.
    case der
    /// RFC 7517 JSON Web Key (`kty` RSA, `alg` RS256, `kid` = SHA-256 fingerprint).
    case jwk
}

/// `key generate`, `key show`, `key list`, `key export`.
public enum KeyCommands {
    /// Generates an RSA key pair on the token under the key policy and proves it.
    public static func generate(target: TokenTarget, bits: UInt, id: [UInt8]?, console: Console) throws -> KeyReport {
        let key = try target.requireKey()
        guard case .label(let label) = key else {
            throw TokenKeysError(.invalidArgument, "key generate takes --key LABEL (a new label), not a URI")
        }
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, console: console)
        let tokenLabel = opened.token.info.label
        let pair = try during("generating an RSA-\(bits) key pair on token '\(tokenLabel)'") {
            try Progress.run("Generating RSA-\(bits) key pair '\(label)' on token '\(tokenLabel)'", console: console) {
                try KeyGenerator.generate(KeyGenerationRequest(label: label, bits: bits, id: id), in: opened.session)
            }
        }
        return KeyReport(pair)
    }

    /// The key's attributes and policy verdict (a failing key is shown, not refused).
    public static func show(target: TokenTarget, console: Console) throws -> KeyReport {
        let key = try target.requireKey()
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, console: console)
        return KeyReport(try during("reading key '\(key)'") { try KeyStore.find(key, in: opened.session) })
    }

    /// Every private key on the token, with its verdict.
    public static func list(target: TokenTarget, console: Console) throws -> [KeyReport] {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, console: console)
        return try during("listing the keys of token '\(opened.token.info.label)'") {
            try KeyStore.list(in: opened.session).map(KeyReport.init)
        }
    }

    /// The public key in the requested format; refuses a key that fails the policy.
    public static func exportPublicKey(target: TokenTarget, format: PublicKeyFormat, console: Console) throws -> [UInt8] {
        let key = try target.requireKey()
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, console: console)
        let pair = try during("reading key '\(key)'") { try KeyStore.findUsable(key, in: opened.session) }
        guard let publicKey = pair.publicKey else {
            throw TokenKeysError(.notAnRSAKey, "key '\(pair.label)' has no readable RSA public key")
        }
        switch format {
        case .pem:
            return Array((publicKey.pem + "\n").utf8)
        case .der:
            return publicKey.subjectPublicKeyInfoDER
        case .jwk:
            let jwk = RSAPublicJWK(modulus: publicKey.modulus, publicExponent: publicKey.publicExponent,
                                   keyID: publicKey.fingerprint)
            return Array(try JSONOutput.encode(jwk).utf8)
        }
    }
}
