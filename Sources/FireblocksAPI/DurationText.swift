#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Durations as people write them on command lines: `90`, `90s`, `15m`, `1h`, `1h30m`, `1.5s`.
public enum DurationText {
    /// Seconds; refuses anything else, negative or non-finite values, and more than 30 days.
    public static func seconds(_ text: String, flag: String) throws(APIClientError) -> TimeInterval {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var total = 0.0
        var number = ""
        var sawUnit = false
        for character in text {
            if character.isASCII, character.isNumber || character == "." {
                number.append(character)
            } else if let unit = units[character], let value = Double(number), value.isFinite {
                total += value * unit
                number = ""
                sawUnit = true
            } else {
                throw APIClientError(.badInput, "\(flag) '\(text)' is not a duration (e.g. 30s, 15m, 1h30m, or seconds)")
            }
        }
        if !number.isEmpty {
            guard !sawUnit, let value = Double(number), value.isFinite else {
                throw APIClientError(.badInput, "\(flag) '\(text)' is not a duration (e.g. 30s, 15m, 1h30m, or seconds)")
            }
            total += value
        } else if !sawUnit {
            throw APIClientError(.badInput, "\(flag) needs a duration (e.g. 30s, 15m, 1h30m)")
        }
        guard total.isFinite, total >= 0, total <= 30 * 86_400 else {
            throw APIClientError(.badInput, "\(flag) must be at most 30 days")
        }
        return total
    }
}

/// Numbers with a fixed number of decimals, as `printf("%.*f")` writes them (Foundation's
/// `String(format:)` is not in FoundationEssentials).
public enum DecimalText {
    /// `value` rounded to `places` decimals (0 to 6); non-finite or huge values as Swift writes them.
    public static func fixed(_ value: Double, places: Int) -> String {
        let places = min(max(places, 0), 6)
        var scale: UInt64 = 1
        for _ in 0..<places { scale *= 10 }
        let scaled = (value * Double(scale)).rounded()
        guard scaled.isFinite, scaled.magnitude < 9e15 else { return "\(value)" }
        let units = Int64(scaled)
        let whole = units.magnitude / scale
        let sign = units < 0 ? "-" : ""
        guard places > 0 else { return "\(sign)\(whole)" }
        let fraction = String(units.magnitude % scale)
        return "\(sign)\(whole)." + String(repeating: "0", count: places - fraction.count) + fraction
    }
}
