import Testing
import TokenKeys
import X509

@Suite("CSR subject")
struct CSRSubjectTests {
    @Test func needsAnOrganisationOrCommonName() {
        #expect(throws: TokenKeysError(.invalidSubject, "")) { try CSRSubject(country: "US") }
        #expect(throws: Never.self) { try CSRSubject(organization: "Acme Corp") }
        #expect(throws: Never.self) { try CSRSubject(commonName: "ci-bot") }
    }

    @Test func countryIsAnISO3166Code() throws {
        #expect(try CSRSubject(organization: "Acme", country: "us").country == "US")
        #expect(throws: TokenKeysError(.invalidSubject, "")) { try CSRSubject(organization: "Acme", country: "USA") }
        #expect(throws: TokenKeysError(.invalidSubject, "")) { try CSRSubject(organization: "Acme", country: "XX") }
    }

    @Test func ukGetsAHint() {
        do {
            _ = try CSRSubject(organization: "Acme", country: "UK")
            Issue.record("expected an error")
        } catch {
            #expect(error.reason.contains("GB"))
        }
    }

    @Test(arguments: [
        CSRField.commonName(String(repeating: "a", count: 65)),
        CSRField.organization(""),
        CSRField.organization("Acme\nCorp"),
        CSRField.organizationalUnit(" API Team"),
        CSRField.locality(String(repeating: "l", count: 129)),
    ])
    func refusesBadFieldValues(field: CSRField) {
        #expect(throws: TokenKeysError(.invalidSubject, "")) { try field.subject() }
    }

    @Test func distinguishedNameIsInOpenSSLOrder() throws {
        let subject = try CSRSubject(commonName: "John_the_API_Guy", organization: "Acme Corp",
                                     organizationalUnit: "API Team", country: "US", state: "NY", locality: "New York")
        let name = try subject.distinguishedName()
        #expect(name.description == "CN=John_the_API_Guy,OU=API Team,O=Acme Corp,L=New York,ST=NY,C=US")
    }
}

enum CSRField: Sendable, CustomTestStringConvertible {
    case commonName(String), organization(String), organizationalUnit(String), locality(String)

    func subject() throws -> CSRSubject {
        switch self {
        case .commonName(let value): return try CSRSubject(commonName: value, organization: "Acme")
        case .organization(let value): return try CSRSubject(commonName: "x", organization: value)
        case .organizationalUnit(let value): return try CSRSubject(organization: "Acme", organizationalUnit: value)
        case .locality(let value): return try CSRSubject(organization: "Acme", locality: value)
        }
    }

    var testDescription: String {
        switch self {
        case .commonName(let value): return "--cn of \(value.count) chars"
        case .organization(let value): return "--o \(value.debugDescription)"
        case .organizationalUnit(let value): return "--ou \(value.debugDescription)"
        case .locality(let value): return "--l of \(value.count) chars"
        }
    }
}
