/// Makes RS256 signatures (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) over a JWS signing
/// input. The JWT code knows only this; a PKCS#11 token key is one implementation.
///
/// Like swift-certificates' `CustomPrivateKey`, a signer has a synchronous and an asynchronous
/// form; the asynchronous one defaults to calling the synchronous one. A signer whose work
/// blocks (a hardware token) implements the asynchronous form to run off Swift's cooperative
/// thread pool.
public protocol RS256Signer: Sendable {
    /// Signs `signingInput` (the signer hashes it).
    func signRS256(_ signingInput: [UInt8]) throws -> [UInt8]

    /// Signs `signingInput` without blocking the caller's executor.
    func signRS256(_ signingInput: [UInt8]) async throws -> [UInt8]
}

extension RS256Signer {
    /// The default bridge: the synchronous signature, on the caller's executor.
    public func signRS256(_ signingInput: [UInt8]) async throws -> [UInt8] {
        let synchronous: ([UInt8]) throws -> [UInt8] = signRS256
        return try synchronous(signingInput)
    }
}
