import PKCS11
import Testing
import TokenKeys

@Suite("Key policy")
struct KeyPolicyTests {
    let policy = KeyPolicy.signingKey

    @Test func privateKeyTemplateSetsEveryRelevantBooleanExplicitly() {
        let template = policy.privateKeyTemplate(label: "k", id: [1], onToken: true, modifiable: false)
        let expected: [AttributeType: Bool] = [
            .token: true, .private: true, .sensitive: true, .extractable: false, .sign: true,
            .decrypt: false, .unwrap: false, .derive: false, .modifiable: false, .signRecover: false,
        ]
        for (type, value) in expected {
            #expect(template.contains(.bool(type, value)), "\(type.name) must be \(value)")
        }
        #expect(template.contains(.class(.privateKey)))
        #expect(template.contains(.id([1])))
    }

    @Test func publicKeyTemplateIsVerifyOnly() {
        let template = policy.publicKeyTemplate(label: "k", id: nil, bits: 4096, onToken: true, modifiable: false)
        for (type, value) in [(AttributeType.token, true), (.verify, true), (.encrypt, false), (.wrap, false)] {
            #expect(template.contains(.bool(type, value)), "\(type.name) must be \(value)")
        }
        #expect(template.contains(.modulusBits(4096)))
        #expect(template.contains(.publicExponent([1, 0, 1])))
        #expect(!template.contains { $0.type == .id })
    }

    @Test func aKeyAsGeneratedMeetsThePolicy() {
        #expect(policy.evaluate(privateKey: Self.goodKey, modulusBits: 4096) == .meetsPolicy)
    }

    @Test(arguments: [
        (AttributeType.local, false), (.alwaysSensitive, false), (.neverExtractable, false),
        (.sensitive, false), (.private, false), (.extractable, true), (.sign, false), (.decrypt, true), (.unwrap, true),
    ])
    func eachWrongAttributeFailsAndIsNamed(attribute: AttributeType, value: Bool) {
        var key = Self.goodKey
        key[attribute] = .value(.bool(attribute, value))
        let verdict = policy.evaluate(privateKey: key, modulusBits: 4096)
        #expect(verdict.failures.map(\.attribute) == [attribute])
        #expect(verdict.failures.first?.description.hasPrefix(attribute.name) == true)
    }

    @Test func anUnreadableRequiredAttributeFails() {
        var key = Self.goodKey
        key[.neverExtractable] = .unavailable(.attributeTypeInvalid)
        #expect(policy.evaluate(privateKey: key, modulusBits: 4096).failures.map(\.attribute) == [.neverExtractable])
        key[.neverExtractable] = nil
        #expect(policy.evaluate(privateKey: key, modulusBits: 4096).failures.map(\.attribute) == [.neverExtractable])
    }

    @Test func aSmallModulusFails() {
        #expect(policy.evaluate(privateKey: Self.goodKey, modulusBits: 1024).failures.map(\.attribute) == [.modulusBits])
    }

    @Test func aNonRSAKeyFails() {
        var key = Self.goodKey
        key[.keyType] = .value(.keyType(.ec))
        #expect(policy.evaluate(privateKey: key, modulusBits: nil).failures.map(\.attribute) == [.keyType])
    }

    static let goodKey: [AttributeType: AttributeReading] = {
        var key: [AttributeType: AttributeReading] = [
            .class: .value(.class(.privateKey)),
            .keyType: .value(.keyType(.rsa)),
        ]
        for (type, value) in [(AttributeType.local, true), (.alwaysSensitive, true), (.neverExtractable, true),
                              (.sensitive, true), (.private, true), (.extractable, false), (.sign, true),
                              (.decrypt, false), (.unwrap, false)] {
            key[type] = .value(.bool(type, value))
        }
        return key
    }()
}
