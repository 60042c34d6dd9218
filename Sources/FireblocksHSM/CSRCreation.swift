import DurableFiles
import AuditTrail
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys
import X509
import HexEncoding

/// `csr`: a PKCS#10 request signed on the token, verified, then written atomically.
public enum CSRCreation {
    /// - Parameters:
    ///   - output: a file path, or `-` for standard output.
    ///   - overwrite: replace an existing file (`--force`).
    public static func make(target: TokenTarget, subject: CSRSubject, output: String, overwrite: Bool,
                            auditDirectory: URL, observer: any OperationObserver) throws -> (report: CSRReport, pem: String) {
        let key = try target.requireKey()
        // Fail on an unusable output path before asking for a PIN or signing anything.
        if output != "-" {
            try AtomicFile.checkWritable(output, overwrite: overwrite)
        }
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: auditDirectory)
        return try opened.recordingFailure(of: "csr", auditDirectory: auditDirectory) {
            let tokenLabel = opened.token.info.label
            let pair = try during("reading key '\(key)'", token: tokenLabel, key: "\(key)") { try KeyStore.findUsable(key, in: opened.session) }
            let signer = try during("opening a signing session on token '\(tokenLabel)'", token: tokenLabel, key: "\(key)") {
                try TokenSigner(keyPair: pair, slot: opened.token.slot)
            }
            // The trail is opened once the key is known to be usable: nothing is made for a refusal.
            let audit = try AuditService.prepare(opened: opened, directory: auditDirectory, observer: observer)
            let csr = try during("signing the CSR with key '\(pair.label)' on token '\(tokenLabel)'", token: tokenLabel, key: pair.label) {
                try CSRBuilder.makeCSR(subject: subject, signingKey: TokenPrivateKey(signer: signer))
            }
            let pem = try csr.serializeAsPEM().pemString + "\n"
            let bytes = Array(pem.utf8)
            if output != "-" {
                try AtomicFile.write(bytes, to: output, overwrite: overwrite, mode: 0o644)
            }
            let report = CSRReport(
                path: output,
                pemSHA256: hex(SHA256.hash(data: bytes)),
                subject: csr.subject.description,
                signatureAlgorithm: "sha256WithRSAEncryption",
                verified: true,
                key: KeyIdentity(pair, publicKey: signer.publicKey))
            try audit.recordDone([AuditEntry(event: "csr.created", facts: [
                "key": .string(pair.label), "spkiSHA256": .string(signer.publicKey.fingerprint), "subject": .string(report.subject),
                "derSHA256": .string(hex(SHA256.hash(data: try csr.serializeAsPEM().derBytes))), "path": .string(output)])],
                done: "the CSR was signed and written")
            return (report, pem)
        }
    }
}
