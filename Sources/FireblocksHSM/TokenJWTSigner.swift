import JOSE
import TokenKeys

/// A token key as the JWT code's signer: RS256 = `CKM_SHA256_RSA_PKCS` on the token.
public struct TokenJWTSigner: RS256Signer {
    /// The signer.
    public let signer: TokenSigner

    /// Creates the value from its parts.
    public init(_ signer: TokenSigner) {
        self.signer = signer
    }

    /// `CKM_SHA256_RSA_PKCS` on the token.
    public func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        try signer.signRS256(signingInput)
    }

    /// Off Swift's cooperative thread pool (see ``TokenSigner``).
    public func signRS256(_ signingInput: [UInt8]) async throws -> [UInt8] {
        try await signer.signRS256(signingInput)
    }
}

/// A ``SigningPool`` as the JWT code's signer: what the signing proxy and `bench sign` use.
public struct PoolJWTSigner: RS256Signer {
    /// The pool.
    public let pool: SigningPool

    /// Creates the value from its parts.
    public init(_ pool: SigningPool) {
        self.pool = pool
    }

    /// Signs through the pool (off Swift's cooperative thread pool).
    public func signRS256(_ signingInput: [UInt8]) async throws -> [UInt8] {
        try await pool.signRS256(signingInput)
    }

    /// The blocking form, for synchronous callers on threads of their own. It waits for the
    /// asynchronous one; never call it from a task (it would hold a cooperative thread).
    public func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        let signature = Handoff<[UInt8]>()
        let pool = pool
        Task.detached {
            signature.put(await Result(catching: { try await pool.signRS256(signingInput) }))
        }
        return try signature.wait()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
