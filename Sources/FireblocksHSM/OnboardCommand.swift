import Crypto
import FireblocksAPI
import Foundation
import PKCS11
import TokenKeys
import X509

/// What `onboard` is asked to do.
public struct OnboardRequest: Sendable {
    public var keyLabel: String
    public var bits: UInt
    public var subject: CSRSubject
    public var csrPath: String
    public var overwriteCSR: Bool
    public var name: String
    public var role: APIUserRole
    public var coSignerSetupType: String?
    public var coSignerSetupIsFirstUser: Bool?
    /// Set to create the API user: the admin key on the same token, and the API it talks to.
    public var submission: Submission?

    public struct Submission: Sendable {
        public var adminKey: KeySelector
        public var api: APITarget
        public var idempotencyKey: String?

        public init(adminKey: KeySelector, api: APITarget, idempotencyKey: String?) {
            self.adminKey = adminKey
            self.api = api
            self.idempotencyKey = idempotencyKey
        }
    }

    public init(keyLabel: String, bits: UInt, subject: CSRSubject, csrPath: String, overwriteCSR: Bool, name: String,
                role: APIUserRole, coSignerSetupType: String?, coSignerSetupIsFirstUser: Bool?, submission: Submission?) {
        self.keyLabel = keyLabel
        self.bits = bits
        self.subject = subject
        self.csrPath = csrPath
        self.overwriteCSR = overwriteCSR
        self.name = name
        self.role = role
        self.coSignerSetupType = coSignerSetupType
        self.coSignerSetupIsFirstUser = coSignerSetupIsFirstUser
        self.submission = submission
    }
}

/// What `onboard` did.
public struct OnboardReport: Codable, Sendable, Equatable {
    public let token: String
    public let keyLabel: String
    public let keyID: String
    public let keyFingerprintSHA256: String
    /// `generated`, or `resumed` when an earlier run of the same onboarding made it.
    public let key: String
    public let csrPath: String
    public let csrSHA256: String
    /// `written`, or `reused` when the file already held this key's CSR with this subject.
    public let csr: String
    public let submission: APIUserCreationReport?
    /// The user as the API lists it, when submitted and found by name.
    public let apiUser: APIUser?
    public let nextSteps: [String]
}

/// `onboard`: the seed flow in one command. Keygen (under the key policy), CSR signed on the
/// token, and optionally the API user's creation signed by an admin key. Re-running after a
/// failure resumes: the key and CSR an earlier run made are reused, and the creation request is
/// re-sent with the same Idempotency-Key, so there is never a second key or a second user.
public enum OnboardCommand {
    public static func run(token target: TokenTarget, request: OnboardRequest, stateDirectory: URL,
                           console: Console) async throws -> OnboardReport {
        try KeyLabel.validate(request.keyLabel)
        // Fail on a doomed CSR path before touching the token (an existing file is judged later:
        // it may be this key's CSR from an earlier run).
        try AtomicFile.checkWritable(request.csrPath, overwrite: true)

        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, console: console)
        let info = opened.token.info
        let log = OnboardingLog(fileURL: stateDirectory.appendingPathComponent("onboarding.json"))

        // 1. The key: generate, or resume one an earlier onboarding of this label made.
        let pair: TokenKeyPair
        let keyState: String
        let existing = try opened.session.findObjects([.class(.privateKey), .label(request.keyLabel)])
        if existing.isEmpty {
            pair = try during("generating an RSA-\(request.bits) key pair on token '\(info.label)'") {
                try Progress.run("Generating RSA-\(request.bits) key pair '\(request.keyLabel)' on token '\(info.label)'", console: console) {
                    try KeyGenerator.generate(KeyGenerationRequest(label: request.keyLabel, bits: request.bits), in: opened.session)
                }
            }
            try log.record(OnboardingLog.Entry(tokenSerial: info.serialNumber, tokenLabel: info.label, keyLabel: pair.label,
                                               keyID: hex(pair.id), fingerprint: pair.publicKey!.fingerprint,
                                               name: request.name, role: request.role.rawValue, createdAt: Date()))
            keyState = "generated"
        } else {
            pair = try during("reading key '\(request.keyLabel)'") {
                try KeyStore.findUsable(.label(request.keyLabel), in: opened.session)
            }
            guard let entry = try log.entry(tokenSerial: info.serialNumber, keyLabel: request.keyLabel),
                  entry.fingerprint == pair.publicKey?.fingerprint else {
                throw TokenKeysError(.keyExists, "token '\(info.label)' already has a key '\(request.keyLabel)' that no earlier onboard made; choose another --key (to onboard an existing key use 'csr' and 'api-user create')")
            }
            console.diagnostic("resuming: key '\(request.keyLabel)' was generated by an earlier onboard on \(ISO8601DateFormatter().string(from: entry.createdAt))")
            keyState = "resumed"
        }
        let publicKey = pair.publicKey!

        // 2. The CSR: reuse a file that already is this key's CSR with this subject.
        let signer = try during("opening a signing session on token '\(info.label)'") {
            try TokenSigner(keyPair: pair, slot: opened.token.slot)
        }
        let csrPEM: String
        let csrState: String
        if let reusable = try reusableCSR(at: request.csrPath, publicKey: publicKey, subject: request.subject),
           !request.overwriteCSR {
            csrPEM = reusable
            csrState = "reused"
        } else {
            if FileManager.default.fileExists(atPath: request.csrPath), !request.overwriteCSR {
                throw FileOutputError(path: request.csrPath, reason: "the file exists and is not this key's CSR with this subject; pass --force to replace it", code: .exists)
            }
            let csr = try during("signing the CSR on token '\(info.label)'") {
                try CSRBuilder.makeCSR(subject: request.subject, signingKey: TokenPrivateKey(signer: signer))
            }
            csrPEM = try csr.serializeAsPEM().pemString + "\n"
            try AtomicFile.write(Array(csrPEM.utf8), to: request.csrPath, overwrite: request.overwriteCSR, mode: 0o644)
            csrState = "written"
        }
        let csrDigest = hex(SHA256.hash(data: Array(csrPEM.utf8)))

        // 3. The API user, when asked.
        var submission: APIUserCreationReport?
        var apiUser: APIUser?
        if let submit = request.submission {
            let session = try APISession.make(opened: opened, key: submit.adminKey, api: submit.api)
            let body = try CreateAPIUser(role: request.role, name: request.name, csrPem: csrPEM,
                                         coSignerSetupType: request.coSignerSetupType,
                                         coSignerSetupIsFirstUser: request.coSignerSetupIsFirstUser)
            let outcome = try await session.client.createAPIUser(body, store: submit.api.idempotencyStore,
                                                                 idempotencyKey: submit.idempotencyKey)
            submission = APIUserCreationReport(name: request.name, role: request.role.rawValue, outcome: outcome,
                                               baseURL: submit.api.baseURL.description)
            // The 200 has no body: find the user by name (the newest one, if several).
            apiUser = try? await session.client.listAPIUsers().users.last { $0.name == request.name }
        }

        return OnboardReport(
            token: info.label, keyLabel: pair.label, keyID: hex(pair.id), keyFingerprintSHA256: publicKey.fingerprint,
            key: keyState, csrPath: request.csrPath, csrSHA256: csrDigest, csr: csrState, submission: submission,
            apiUser: apiUser, nextSteps: nextSteps(request: request, submitted: submission != nil, user: apiUser, fingerprint: publicKey.fingerprint))
    }

    /// The PEM at `path` when it is a CSR for `publicKey` with `subject`; nil otherwise.
    private static func reusableCSR(at path: String, publicKey: TokenRSAPublicKey, subject: CSRSubject) throws -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let pem = String(decoding: data, as: UTF8.self)
        guard let csr = try? CertificateSigningRequest(pemEncoded: pem),
              csr.publicKey == publicKey.certificatePublicKey,
              csr.publicKey.isValidSignature(csr.signature, for: csr),
              csr.subject == (try subject.distinguishedName()) else { return nil }
        return pem
    }

    private static func nextSteps(request: OnboardRequest, submitted: Bool, user: APIUser?, fingerprint: String) -> [String] {
        var steps: [String] = []
        if submitted {
            steps.append("An admin quorum approves the new API user '\(request.name)' in the Fireblocks Console (the request is pending until then).")
            if let user {
                steps.append("Its API key is its id: \(user.id) (status \(user.status ?? "unknown")). Sign its requests with key '\(request.keyLabel)' and --api-key \(user.id).")
            } else {
                steps.append("Find its id (its API key) with 'fireblocks-hsm api-user list' once it is approved.")
            }
            steps.append("Then activate it: pair its co-signer or device (POST /v1/management/api_users/{id}/pairing_token) as your setup requires.")
        } else {
            steps.append("Upload \(request.csrPath) when creating the API user in the Fireblocks Console, or run again with --submit --admin-key … --api-key … to create it through the API.")
        }
        steps.append("Keep the key fingerprint \(fingerprint) with the onboarding record: it identifies the key the API user is bound to.")
        return steps
    }
}

/// Which keys `onboard` generated, so a re-run resumes with them and never adopts a key it
/// did not make. Kept in the state directory (mode 0600).
struct OnboardingLog {
    struct Entry: Codable, Equatable {
        let tokenSerial: String
        let tokenLabel: String
        let keyLabel: String
        let keyID: String
        let fingerprint: String
        let name: String
        let role: String
        let createdAt: Date
    }

    let fileURL: URL

    func entry(tokenSerial: String, keyLabel: String) throws -> Entry? {
        try read().last { $0.tokenSerial == tokenSerial && $0.keyLabel == keyLabel }
    }

    func record(_ entry: Entry) throws {
        try FileManager.default.createDirectory(at: fileURL.deletingLastPathComponent(), withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let entries = try read() + [entry]
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try StateFile.writeAtomically(try encoder.encode(entries), to: fileURL)
    }

    private func read() throws -> [Entry] {
        guard let data = FileManager.default.contents(atPath: fileURL.path), !data.isEmpty else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode([Entry].self, from: data)
    }
}
