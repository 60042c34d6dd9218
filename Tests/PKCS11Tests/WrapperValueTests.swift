import PKCS11
import Testing

@Suite("Return values, errors, attributes, PINs")
struct WrapperValueTests {
    @Test func namesKnownReturnValues() {
        #expect(ReturnValue.pinIncorrect.name == "CKR_PIN_INCORRECT")
        #expect(ReturnValue(rawValue: 0x191).name == "CKR_CRYPTOKI_ALREADY_INITIALIZED")
    }

    @Test func namesVendorAndUnknownReturnValues() {
        #expect(ReturnValue(rawValue: 0x8000_0001).name == "CKR_VENDOR_DEFINED+0x1")
        #expect(ReturnValue(rawValue: 0x777).name == "CKR_0x777")
    }

    @Test func errorNamesFunctionAndReturnValue() {
        let error = PKCS11Error(function: "C_Login", returnValue: .pinIncorrect)
        #expect(error.description == "C_Login: CKR_PIN_INCORRECT")
    }

    @Test func attributeTypesHaveSpecificationNames() {
        #expect(AttributeType.neverExtractable.name == "CKA_NEVER_EXTRACTABLE")
        #expect(AttributeType(rawValue: 0x9999).name == "CKA_0x9999")
        #expect(MechanismType.sha256RSAPKCS.name == "CKM_SHA256_RSA_PKCS")
    }

    @Test func describesAttributesWithoutDumpingBytes() {
        #expect(Attribute.sensitive(true).description == "CKA_SENSITIVE=true")
        #expect(Attribute.id([0x0a, 0xff]).description == "CKA_ID=0aff")
        #expect(Attribute.modulus([1, 2, 3]).description == "CKA_MODULUS=<3 bytes>")
    }

    @Test func pinNeverPrintsItself() {
        let pin = PIN("123456")
        #expect(pin.description == "PIN(redacted)")
        #expect("\(pin)" == "PIN(redacted)")
        #expect(String(reflecting: pin) == "PIN(redacted)")
    }

    @Test func pinComparesByContent() {
        #expect(PIN("1234").isEqual(to: PIN("1234")))
        #expect(!PIN("1234").isEqual(to: PIN("1235")))
        #expect(!PIN("1234").isEqual(to: PIN("12345")))
    }

    @Test func moduleArgumentIsAPathOrARegisteredName() {
        #expect(ModuleLocation(argument: "softhsm2") == .registeredName("softhsm2"))
        #expect(ModuleLocation(argument: "libsofthsm2.so") == .path("libsofthsm2.so"))
        #expect(ModuleLocation(argument: "/opt/hsm/lib.so.1") == .path("/opt/hsm/lib.so.1"))
        #expect(ModuleLocation(argument: "./vendor") == .path("./vendor"))
    }
}
