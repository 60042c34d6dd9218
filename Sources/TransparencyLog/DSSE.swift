#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// DSSE v1 (Dead Simple Signing Envelope): what is signed, and the envelope.
public enum DSSE {
    /// The in-toto payload type.
    public static let inTotoPayloadType = "application/vnd.in-toto+json"

    /// PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload, lengths
    /// as ASCII decimal byte counts: the bytes a DSSE signature covers.
    public static func preAuthenticationEncoding(payloadType: String, payload: [UInt8]) -> [UInt8] {
        let type = Array(payloadType.utf8)
        return Array("DSSEv1 \(type.count) ".utf8) + type + Array(" \(payload.count) ".utf8) + payload
    }

    /// `{"payloadType", "payload": base64, "signatures": [{"keyid", "sig": base64}]}`.
    public struct Envelope: Codable, Sendable, Equatable {
        /// One signature.
        public struct Signature: Codable, Sendable, Equatable {
            /// Which key (free text; here the audit key's SPKI SHA-256).
            public let keyid: String
            /// Base64 of the signature over the PAE.
            public let sig: String

            /// A signature entry.
            public init(keyid: String, sig: String) {
                self.keyid = keyid
                self.sig = sig
            }
        }

        /// The payload's media type.
        public let payloadType: String
        /// Base64 of the payload bytes.
        public let payload: String
        /// The signatures over the PAE.
        public let signatures: [Signature]

        /// An envelope.
        public init(payloadType: String, payload: [UInt8], signatures: [Signature]) {
            self.payloadType = payloadType
            self.payload = Data(payload).base64EncodedString()
            self.signatures = signatures
        }

        /// The payload bytes; nil when not base64.
        public var payloadBytes: [UInt8]? { Data(base64Encoded: payload).map(Array.init) }
    }
}
