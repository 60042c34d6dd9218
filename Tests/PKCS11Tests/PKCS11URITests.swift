import PKCS11
import Testing

/// RFC 7512 parsing through p11-kit: one behaviour per test, and the grammar traps.
@Suite("PKCS11URI")
struct PKCS11URITests {
    @Test func parsesTokenAndObjectLabels() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=fb;object=api-user-1")
        #expect(uri.token == "fb")
        #expect(uri.object == "api-user-1")
        #expect(uri.serial == nil)
        #expect(uri.id == nil)
    }

    @Test func decodesPercentEncodedIDBytes() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:id=%01%A2%ff")
        #expect(uri.id == [0x01, 0xA2, 0xFF])
    }

    @Test func ampersandIsLegalInsideAPathValue() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=R&D;object=k")
        #expect(uri.token == "R&D")
        #expect(uri.object == "k")
    }

    @Test func semicolonIsLegalInsideAQueryValue() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=fb?pin-source=file:/run/a;b&module-name=softhsm2")
        #expect(uri.pinSource == "file:/run/a;b")
        #expect(uri.moduleName == "softhsm2")
        #expect(uri.token == "fb")
    }

    @Test func percentEncodedSeparatorsStayInTheValue() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:object=a%3Bb%3Fc")
        #expect(uri.object == "a;b?c")
    }

    @Test func schemeIsCaseInsensitive() throws {
        let uri = try PKCS11URI(parsing: "PKCS11:token=fb")
        #expect(uri.token == "fb")
        #expect(PKCS11URI.looksLikeURI("PkCs11:token=fb"))
        #expect(!PKCS11URI.looksLikeURI("fb"))
    }

    @Test func refusesAnotherScheme() {
        #expect(throws: PKCS11URIError(code: .badScheme, uri: "")) {
            try PKCS11URI(parsing: "pkcs12:token=fb")
        }
    }

    @Test func refusesBadPercentEncoding() {
        #expect(throws: PKCS11URIError(code: .badEncoding, uri: "")) {
            try PKCS11URI(parsing: "pkcs11:object=%zz")
        }
    }

    @Test func unknownPathAttributeFailsClosed() {
        #expect(throws: PKCS11URIError(code: .unrecognizedAttribute, uri: "")) {
            try PKCS11URI(parsing: "pkcs11:token=fb;colour=blue")
        }
    }

    @Test func tooLongTokenLabelFailsClosed() {
        let label = String(repeating: "x", count: 33)
        #expect(throws: PKCS11URIError(code: .unrecognizedAttribute, uri: "")) {
            try PKCS11URI(parsing: "pkcs11:token=\(label)")
        }
    }

    @Test func refusesPINValueTogetherWithPINSource() {
        #expect(throws: PKCS11URIError(code: .pinValueWithPINSource, uri: "")) {
            try PKCS11URI(parsing: "pkcs11:token=fb?pin-value=1234&pin-source=file:/p")
        }
    }

    @Test func pinValueIsParsedButRedactedWhenPrinted() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=fb?pin-value=s3cret-9")
        #expect(uri.pinValue?.isEqual(to: PIN("s3cret-9")) == true)
        #expect(!uri.description.contains("s3cret"))
        #expect(uri.description.contains("pin-value=REDACTED"))
        #expect(!"\(uri)".contains("s3cret"))
        #expect(try uri.formatted(revealingPINValue: true).contains("pin-value=s3cret-9"))
    }

    @Test func errorsDoNotQuoteThePINValue() {
        do {
            _ = try PKCS11URI(parsing: "pkcs11:token=fb;bogus=1?pin-value=s3cret-9")
            Issue.record("expected an error")
        } catch {
            #expect(!error.description.contains("s3cret"))
            #expect(error.description.contains("REDACTED"))
        }
    }

    @Test func emptyIDIsAnEmptyByteString() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:id=")
        #expect(uri.id == [])
    }

    @Test func typeMapsToObjectClass() throws {
        #expect(try PKCS11URI(parsing: "pkcs11:type=private").type == .privateKey)
        #expect(try PKCS11URI(parsing: "pkcs11:type=public").type == .publicKey)
        #expect(try PKCS11URI(parsing: "pkcs11:type=cert").type == .certificate)
    }

    @Test func readsModuleQueryAttributes() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=fb?module-path=/usr/lib/softhsm/libsofthsm2.so")
        #expect(uri.modulePath == "/usr/lib/softhsm/libsofthsm2.so")
        #expect(uri.moduleName == nil)
    }

    @Test func readsSlotAndLibraryAttributes() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:slot-id=7;library-manufacturer=SoftHSM;library-version=2.6")
        #expect(uri.slotID == SlotID(rawValue: 7))
        #expect(uri.libraryManufacturer == "SoftHSM")
        #expect(uri.libraryVersion == Version(major: 2, minor: 6))
    }

    @Test(arguments: [
        "pkcs11:token=fb;object=api-user-1",
        "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=35db1cee84f43115;token=fb",
        "pkcs11:token=R&D;id=%01%02;object=a%3Bb;type=private?pin-source=env:HSM_PIN&module-name=softhsm2",
        "pkcs11:slot-id=3;library-version=2.6",
    ])
    func roundTripsThroughFormatting(text: String) throws {
        let parsed = try PKCS11URI(parsing: text)
        let reparsed = try PKCS11URI(parsing: try parsed.formatted(revealingPINSource: true))
        #expect(reparsed == parsed)
    }

    @Test func matchesOnlyTheAttributesItSets() throws {
        let info = TokenInfo(label: "fb", manufacturer: "SoftHSM project", model: "SoftHSM v2", serialNumber: "abc")
        #expect(try PKCS11URI(parsing: "pkcs11:token=fb").matches(token: info))
        #expect(try PKCS11URI(parsing: "pkcs11:serial=abc").matches(token: info))
        #expect(try PKCS11URI(parsing: "pkcs11:").matches(token: info))
        #expect(try !PKCS11URI(parsing: "pkcs11:token=fb;serial=abd").matches(token: info))
        #expect(try !PKCS11URI(parsing: "pkcs11:token=f").matches(token: info))
    }

    @Test func objectTemplateCarriesLabelIDAndClass() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:object=k;id=%05;type=private")
        #expect(uri.objectTemplate == [.label("k"), .id([5]), .class(.privateKey)])
        #expect(uri.identifiesObject)
        #expect(!uri.identifiesToken)
    }

    // MARK: Failing closed, and never quoting a secret

    @Test(arguments: ["pkcs11:token=fb?pin-sorce=file:/run/pin", "pkcs11:token=fb?flavour=vanilla",
                      "pkcs11:token=fb?pin%2Dvalue=31415926", "pkcs11:token=fb;colour=red", "pkcs11:token=fb;31415926"])
    func unknownAttributesAreRefused(text: String) {
        #expect(throws: PKCS11URIError(code: .unrecognizedAttribute, uri: "")) { try PKCS11URI(parsing: text) }
    }

    @Test(arguments: ["pkcs11:token=a;token=b", "pkcs11:object=k?module-name=a&module-name=b",
                      "pkcs11:token=fb?pin-source=env:A&pin-source=env:B"])
    func aRepeatedAttributeIsRefused(text: String) {
        #expect(throws: PKCS11URIError(code: .repeatedAttribute, uri: "")) { try PKCS11URI(parsing: text) }
    }

    @Test(arguments: ["pkcs11:token=fb?pin-sorce=31415926", "pkcs11:token=fb?pin%2Dvalue=31415926",
                      "pkcs11:token=fb;pin-value=31415926", "pkcs11:token=fb?x=31415926&y=2", "pkcs11:token=fb;31415926",
                      "pkcs11:token=fb?31415926=1", "pkcs11:token=fb?pin-value=31415926&pin-source=env:X",
                      "pkcs11:token=fb?pin-source=31415926&pin-source=1"])
    func errorsNeverQuoteASecret(text: String) {
        do {
            _ = try PKCS11URI(parsing: text)
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("3141"), "\(error)")
            #expect(!"\(error)".contains("5926"), "\(error)")
        }
    }

    @Test func aMisspeltAttributeIsNamed() {
        do {
            _ = try PKCS11URI(parsing: "pkcs11:token=fb?pin-sorce=file:/run/pin")
            Issue.record("expected an error")
        } catch {
            #expect(error.attribute == "pin-sorce")
            #expect(error.inQuery)
            #expect("\(error)".contains("unknown query attribute 'pin-sorce'"), "\(error)")
        }
    }

    @Test func descriptionRedactsThePinSource() throws {
        let uri = try PKCS11URI(parsing: "pkcs11:token=fb?pin-source=271828")
        #expect(!uri.description.contains("271828"))
        #expect(uri.pinSource == "271828")
    }
}
