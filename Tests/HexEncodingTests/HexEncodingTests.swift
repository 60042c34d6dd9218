import HexEncoding
import Testing

@Suite("Hex")
struct HexEncodingTests {
    @Test func encodesLowercaseAndRoundTrips() {
        let bytes: [UInt8] = [0x00, 0x0f, 0xa5, 0xff]
        #expect(hex(bytes) == "000fa5ff")
        #expect(HexEncoding.bytes(fromHex: "000fa5ff") == bytes)
        #expect(HexEncoding.bytes(fromHex: "00:0F:A5:ff") == bytes)
        #expect(hex([UInt8]()) == "")
    }

    @Test(arguments: ["", "0", "0g", "abc", "٣٣", "½½", ":"])
    func malformedHexIsNil(text: String) {
        #expect(HexEncoding.bytes(fromHex: text) == nil)
    }
}
