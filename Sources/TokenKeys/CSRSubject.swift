#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import X509

/// The subject of an API user's CSR: the fields of Fireblocks' "Create a CSR" recipe
/// (CN, O, OU, C, ST, L), validated before anything is signed.
public struct CSRSubject: Sendable, Equatable {
    /// The common name.
    public let commonName: String?
    /// The organization.
    public let organization: String?
    /// The organizational unit.
    public let organizationalUnit: String?
    /// ISO 3166-1 alpha-2, upper case.
    public let country: String?
    /// The state.
    public let state: String?
    /// The locality.
    public let locality: String?

    /// Validates the fields: at least `--o` or `--cn`; no empty values, control characters or
    /// surrounding spaces; RFC 5280 upper bounds on length; `--c` an ISO 3166-1 alpha-2 code.
    public init(commonName: String? = nil, organization: String? = nil, organizationalUnit: String? = nil,
                country: String? = nil, state: String? = nil, locality: String? = nil) throws(TokenKeysError) {
        guard organization != nil || commonName != nil else {
            throw TokenKeysError(.invalidSubject, "the CSR subject needs at least O (organisation, which Fireblocks requires) or CN")
        }
        self.commonName = try Self.validated(commonName, flag: "CN", maximumLength: 64)
        self.organization = try Self.validated(organization, flag: "O", maximumLength: 64)
        self.organizationalUnit = try Self.validated(organizationalUnit, flag: "OU", maximumLength: 64)
        self.state = try Self.validated(state, flag: "ST", maximumLength: 128)
        self.locality = try Self.validated(locality, flag: "L", maximumLength: 128)
        if let country {
            let upper = country.uppercased()
            guard upper.count == 2, ISO3166.alpha2.contains(upper) else {
                let hint = upper == "UK" ? " (the United Kingdom is GB)" : ""
                throw TokenKeysError(.invalidSubject, "C '\(country)' is not an ISO 3166-1 alpha-2 country code\(hint)")
            }
            self.country = upper
        } else {
            self.country = nil
        }
    }

    /// The distinguished name, in the order `openssl req` writes it: C, ST, L, O, OU, CN.
    public func distinguishedName() throws -> DistinguishedName {
        try DistinguishedName {
            if let country { CountryName(country) }
            if let state { StateOrProvinceName(state) }
            if let locality { LocalityName(locality) }
            if let organization { OrganizationName(organization) }
            if let organizationalUnit { OrganizationalUnitName(organizationalUnit) }
            if let commonName { CommonName(commonName) }
        }
    }

    private static func validated(_ value: String?, flag: String, maximumLength: Int) throws(TokenKeysError) -> String? {
        guard let value else { return nil }
        guard !value.isEmpty else {
            throw TokenKeysError(.invalidSubject, "\(flag) is empty; leave the field out instead")
        }
        guard value.count <= maximumLength else {
            throw TokenKeysError(.invalidSubject, "\(flag) is \(value.count) characters; X.509 allows at most \(maximumLength)")
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw TokenKeysError(.invalidSubject, "\(flag) contains a control character")
        }
        guard value.first?.isWhitespace == false, value.last?.isWhitespace == false else {
            throw TokenKeysError(.invalidSubject, "\(flag) '\(value)' has leading or trailing spaces")
        }
        return value
    }
}

/// ISO 3166-1 alpha-2 country codes (the 249 officially assigned ones).
enum ISO3166 {
    static let alpha2: Set<String> = Set("""
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
        BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
        DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS \
        GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
        KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
        MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM \
        PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV \
        SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
        VN VU WF WS YE YT ZA ZM ZW
        """.split(separator: " ").map(String.init))
}
