import ArgumentParser
import FireblocksAPI
import TokenKeys

/// The CSR subject fields of Fireblocks' "Create a CSR" recipe.
struct SubjectOptions: ParsableArguments {
    @Option(name: .customLong("cn"), help: "Common Name, e.g. the API user's name.")
    var commonName: String?
    @Option(name: .customLong("o"), help: "Organization (Fireblocks requires it).")
    var organization: String?
    @Option(name: .customLong("ou"), help: "Organizational Unit.")
    var organizationalUnit: String?
    @Option(name: .customLong("c"), help: "Country: ISO 3166-1 alpha-2, e.g. US.")
    var country: String?
    @Option(name: .customLong("st"), help: "State or province.")
    var state: String?
    @Option(name: .customLong("l"), help: "Locality (city).")
    var locality: String?

    /// The validated subject.
    func subject() throws -> CSRSubject {
        try CSRSubject(commonName: commonName, organization: organization, organizationalUnit: organizationalUnit,
                       country: country, state: state, locality: locality)
    }
}

/// The optional fields of an API user's creation.
struct CreationOptions: ParsableArguments {
    @Option(name: .customLong("co-signer-setup-type"), help: "coSignerSetupType, e.g. SGX_MACHINE (management/signer roles on co-signer setups).")
    var coSignerSetupType: String?

    @Flag(name: .customLong("co-signer-first-user"), help: "coSignerSetupIsFirstUser: true.")
    var coSignerFirstUser = false

    @Option(name: .customLong("idempotency-key"), help: "Use this Idempotency-Key instead of a generated one.")
    var idempotencyKey: String?

    func validate() throws {
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
    }

    /// `coSignerSetupIsFirstUser` as sent: absent unless the flag is given.
    var coSignerSetupIsFirstUser: Bool? { coSignerFirstUser ? true : nil }
}
