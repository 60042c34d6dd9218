/// A non-negative decimal number held as its digits: `12.50` is the digits `1 2 5` with one
/// fraction digit. Amounts of assets are compared and added exactly: no binary floating point
/// (a `Double` cannot hold `0.1`), and no rounding anywhere.
///
/// The text form is what Fireblocks' API uses for amounts: digits, optionally a `.` and more
/// digits (`100`, `0.000001`, `250000.5`); no sign, no exponent, no spaces, no thousands
/// separators. At most 40 digits before the point and 36 after, so that no input makes an
/// unbounded number.
public struct ExactDecimal: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The digits, most significant first, without leading zeros before the point nor trailing
    /// zeros after it (zero is no digits).
    private let digits: [UInt8]
    /// How many of ``digits`` are after the point.
    private let scale: Int

    /// The most digits before the point.
    public static let maximumIntegerDigits = 40
    /// The most digits after the point.
    public static let maximumFractionDigits = 36

    /// Zero.
    public static let zero = ExactDecimal(normalizing: [], scale: 0)

    /// Parses `digits[.digits]`; nil for anything else (a sign, an exponent, a space, too many
    /// digits).
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty else { return nil }
        var integer: [UInt8] = []
        var fraction: [UInt8] = []
        var seenPoint = false
        for byte in utf8 {
            if byte == UInt8(ascii: ".") {
                guard !seenPoint else { return nil }
                seenPoint = true
            } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                if seenPoint { fraction.append(byte - UInt8(ascii: "0")) } else { integer.append(byte - UInt8(ascii: "0")) }
            } else {
                return nil
            }
        }
        guard !integer.isEmpty, !seenPoint || !fraction.isEmpty else { return nil }
        guard integer.count <= Self.maximumIntegerDigits, fraction.count <= Self.maximumFractionDigits else { return nil }
        self.init(normalizing: integer + fraction, scale: fraction.count)
    }

    private init(normalizing raw: [UInt8], scale rawScale: Int) {
        var digits = raw[...]
        var scale = rawScale
        while scale > 0, digits.last == 0 {
            digits = digits.dropLast()
            scale -= 1
        }
        while digits.count > scale, digits.first == 0 { digits = digits.dropFirst() }
        if digits.allSatisfy({ $0 == 0 }) {
            self.digits = []
            self.scale = 0
        } else {
            self.digits = Array(digits)
            self.scale = scale
        }
    }

    /// True for zero.
    public var isZero: Bool { digits.isEmpty }

    /// The digits aligned to `scale` fraction digits (`scale` at least this one's).
    private func aligned(to scale: Int) -> [UInt8] {
        digits + [UInt8](repeating: 0, count: scale - self.scale)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        let scale = max(lhs.scale, rhs.scale)
        let left = lhs.aligned(to: scale).drop(while: { $0 == 0 })
        let right = rhs.aligned(to: scale).drop(while: { $0 == 0 })
        if left.count != right.count { return left.count < right.count }
        return left.lexicographicallyPrecedes(right)
    }

    /// The exact sum.
    public static func + (lhs: Self, rhs: Self) -> Self {
        let scale = max(lhs.scale, rhs.scale)
        let left = Array(lhs.aligned(to: scale).reversed())
        let right = Array(rhs.aligned(to: scale).reversed())
        var sum: [UInt8] = []
        sum.reserveCapacity(max(left.count, right.count) + 1)
        var carry: UInt8 = 0
        for index in 0..<max(left.count, right.count) {
            let digit = (index < left.count ? left[index] : 0) + (index < right.count ? right[index] : 0) + carry
            sum.append(digit % 10)
            carry = digit / 10
        }
        if carry > 0 { sum.append(carry) }
        return ExactDecimal(normalizing: sum.reversed(), scale: scale)
    }

    /// The exact difference, `lhs - rhs`; nil when `rhs` is larger (no negative amounts).
    public static func subtracting(_ rhs: Self, from lhs: Self) -> Self? {
        guard !(lhs < rhs) else { return lhs == rhs ? .zero : nil }
        let scale = max(lhs.scale, rhs.scale)
        let left = Array(lhs.aligned(to: scale).reversed())
        let right = Array(rhs.aligned(to: scale).reversed())
        var difference: [UInt8] = []
        difference.reserveCapacity(left.count)
        var borrow: Int = 0
        for index in 0..<left.count {
            var digit = Int(left[index]) - (index < right.count ? Int(right[index]) : 0) - borrow
            borrow = digit < 0 ? 1 : 0
            if digit < 0 { digit += 10 }
            difference.append(UInt8(digit))
        }
        return ExactDecimal(normalizing: difference.reversed(), scale: scale)
    }

    /// The canonical text: `0`, `12.5`, `0.001`.
    public var description: String {
        guard !digits.isEmpty else { return "0" }
        let characters = digits.map { Character(Unicode.Scalar($0 + UInt8(ascii: "0"))) }
        if scale == 0 { return String(characters) }
        let integerCount = characters.count - scale
        let integer = integerCount > 0 ? String(characters[..<integerCount]) : "0"
        let zeros = String(repeating: "0", count: max(0, -integerCount))
        return integer + "." + zeros + String(characters[max(0, integerCount)...])
    }
}
