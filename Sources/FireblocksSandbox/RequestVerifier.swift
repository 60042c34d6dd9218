import ErrorShape
import _CryptoExtras
import Crypto
import FireblocksAPI
import Foundation
import JOSE

/// Why a request's authentication was refused, with the `ErrorSchema` code the API uses.
public struct AuthenticationFailure: LibraryError, Equatable {
    /// One code: the request's authentication was refused (``schemaCode`` says how).
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// Refused as the API would refuse it.
        public static let refused = Code("refused")
    }
    public var code: Code { .refused }
    /// The API's `ErrorSchema` code (-1 … -12).
    public let schemaCode: Int
    /// The message.
    public let message: String
    public var reason: String { "\(message) (code \(schemaCode))" }
    public var description: String { reason }
    public let location: ErrorLocation

    init(code: Int, message: String, file: String = #fileID, line: UInt = #line) {
        self.schemaCode = code
        self.message = message
        self.location = ErrorLocation(file: file, line: line)
    }

    /// Equal when the schema codes and messages are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.schemaCode == rhs.schemaCode && lhs.message == rhs.message }
}

/// Checks a request the way the API is documented to: a known `X-API-Key`; an RS256 JWT
/// verifying with that API user's registered key; `sub` = the API key; `uri` = the path and
/// query received; `bodyHash` = SHA-256 of the bytes received; `exp - iat` within bounds; not
/// expired; `iat` not in the future beyond a small leeway; a nonce never seen before.
struct RequestVerifier {
    let configuration: SandboxConfiguration

    /// Code assignments for failures the API documentation does not number are documented in
    /// docs/sandbox.md.
    /// - Parameter created: the created users that may call too (approved, READY, enabled), with
    ///   the public keys of their CSRs.
    func verify(_ request: SandboxRequest, now: Date, created: [TrustedAPIUser] = [],
                seenNonce: (String) -> Bool) -> Result<(TrustedAPIUser, RequestClaims), AuthenticationFailure> {
        guard let apiKey = request.headers["x-api-key"], !apiKey.isEmpty else {
            return .failure(AuthenticationFailure(code: -7, message: "Unauthorized: X-API-Key header missing"))
        }
        guard let user = configuration.trusted.first(where: { $0.apiKey == apiKey }) ?? created.first(where: { $0.apiKey == apiKey }) else {
            return .failure(AuthenticationFailure(code: -7, message: "Unauthorized: unknown API key"))
        }
        guard let authorization = request.headers["authorization"], authorization.hasPrefix("Bearer ") else {
            return .failure(AuthenticationFailure(code: -3, message: "Unauthorized: JWT is missing"))
        }
        guard let jws = CompactJWS(compact: String(authorization.dropFirst("Bearer ".count))) else {
            return .failure(AuthenticationFailure(code: -5, message: "Unauthorized: invalid token format"))
        }
        guard let header = try? JSONSerialization.jsonObject(with: Data(jws.header)) as? [String: Any],
              header["alg"] as? String == "RS256" else {
            return .failure(AuthenticationFailure(code: -5, message: "Unauthorized: token header is not alg RS256"))
        }
        // RFC 7515 §4.1.11: a recipient that does not understand every extension listed in
        // "crit" must reject the JWS; this one understands none.
        guard header["crit"] == nil else {
            return .failure(AuthenticationFailure(code: -5, message: "Unauthorized: token header has \"crit\" extensions, none of which are understood"))
        }
        let signatureValid = user.publicKey.isValidSignature(
            _RSA.Signing.RSASignature(rawRepresentation: jws.signature),
            for: SHA256.hash(data: Data(jws.signingInput.utf8)), padding: .insecurePKCS1v1_5)
        guard signatureValid else {
            return .failure(AuthenticationFailure(code: -1, message: "Unauthorized: invalid signature"))
        }
        guard let claims = try? JSONDecoder().decode(RequestClaims.self, from: Data(jws.payload)) else {
            return .failure(AuthenticationFailure(code: -5, message: "Unauthorized: invalid token claims (need uri, nonce, iat, exp, sub, bodyHash)"))
        }
        guard !claims.sub.isEmpty else {
            return .failure(AuthenticationFailure(code: -2, message: "Unauthorized: API key missing from the token"))
        }
        guard claims.sub == apiKey else {
            return .failure(AuthenticationFailure(code: -6, message: "Unauthorized: token subject is not the X-API-Key user"))
        }
        guard claims.uri == request.target else {
            return .failure(AuthenticationFailure(code: -4, message: "Unauthorized: wrong URL in the token (signed \(claims.uri), received \(request.target))"))
        }
        guard claims.bodyHash == RequestClaims.bodyHash(request.body) else {
            return .failure(AuthenticationFailure(code: -1, message: "Unauthorized: bodyHash does not match the body received"))
        }
        // Subtraction that cannot trap: the claims are the sender's, any Int goes.
        let (lifetime, overflow) = claims.exp.subtractingReportingOverflow(claims.iat)
        guard !overflow, claims.exp > claims.iat, lifetime <= configuration.maximumTokenLifetime else {
            return .failure(AuthenticationFailure(code: -5, message: "Unauthorized: token lifetime (exp - iat) must be 1 to \(configuration.maximumTokenLifetime) s"))
        }
        let nowSeconds = now.timeIntervalSince1970
        guard TimeInterval(claims.exp) >= nowSeconds else {
            return .failure(AuthenticationFailure(code: -10, message: "Unauthorized: request expired"))
        }
        guard TimeInterval(claims.iat) <= nowSeconds + configuration.iatLeeway else {
            return .failure(AuthenticationFailure(code: -12, message: "Unauthorized: iat is in the future"))
        }
        guard !claims.nonce.isEmpty, !seenNonce(claims.nonce) else {
            return .failure(AuthenticationFailure(code: -7, message: "Unauthorized: nonce already used (replayed token)"))
        }
        return .success((user, claims))
    }
}
