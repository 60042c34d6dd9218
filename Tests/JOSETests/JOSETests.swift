import Foundation
import JOSE
import Testing

/// A signer whose synchronous form counts and whose asynchronous form is the default bridge.
private struct CountingSigner: RS256Signer {
    func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] { Array(signingInput.reversed()) }
}

@Suite("JOSE: base64url and compact JWS")
struct JOSETests {
    @Test(arguments: [[], [0], [0xfb, 0xff], [0x3e, 0x3f, 0xfe, 0xff], (0...255).map { UInt8($0) }] as [[UInt8]])
    func base64URLRoundTripsWithoutPadding(bytes: [UInt8]) throws {
        let text = Base64URL.encode(bytes)
        #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
        #expect(Base64URL.decode(text).map(Array.init) == bytes)
    }

    @Test(arguments: ["ab+c", "ab/c", "YQ==", "a"])
    func standardAlphabetAndPaddingAreRefused(text: String) {
        #expect(Base64URL.decode(text) == nil)
    }

    @Test func aCompactJWSSplitsAndKeepsItsSigningInput() throws {
        let jws = try CompactJWS.sign(payload: Array(#"{"a":1}"#.utf8), with: CountingSigner())
        let parsed = try #require(CompactJWS(compact: jws.compact))
        #expect(parsed == jws)
        #expect(parsed.signingInput == jws.compact.split(separator: ".").prefix(2).joined(separator: "."))
        #expect(CompactJWS(compact: "a.b") == nil)
        #expect(CompactJWS(compact: "a.b.c.d") == nil)
    }

    @Test func theAsyncFormDefaultsToTheSynchronousOne() async throws {
        let signer = CountingSigner()
        let input = Array("header.payload".utf8)
        let sync: ([UInt8]) throws -> [UInt8] = signer.signRS256
        let synchronous = try sync(input)
        let asynchronous: [UInt8] = try await signer.signRS256(input)
        #expect(synchronous == asynchronous)
        let jws = try await CompactJWS.sign(payload: [1, 2, 3], with: signer)
        #expect(jws.signature == Array(jws.signingInput.utf8.reversed()))
    }

    @Test func aJWKCarriesTheKeyInBase64URL() throws {
        let jwk = RSAPublicJWK(modulus: [0xff, 0x01], publicExponent: [1, 0, 1], keyID: "k")
        #expect(jwk.n == "_wE" && jwk.e == "AQAB" && jwk.kty == "RSA" && jwk.alg == "RS256" && jwk.use == "sig")
    }
}
