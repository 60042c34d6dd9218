import ArgumentParser
import FireblocksHSM

struct JWTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jwt",
        abstract: "Print the bearer token (RS256 JWT, signed on the token) for one API request.",
        discussion: """
            The token is a 55-second bearer credential: pipe it where it is needed, do
            not log it. Its claims: uri (the path with /v1 and query), a fresh nonce,
            iat, exp, sub (the API key) and bodyHash (SHA-256 of the exact body bytes;
            of the empty string without a body). The uri claim names no host, so
            --env/--base-url are needed only to add their base path to a --path without
            it.

            Examples:
              fireblocks-hsm jwt --token fb --key admin --api-key "$ADMIN_API_KEY" \\
                  --method POST --path /v1/management/api_users --body-file body.json
              curl -H "X-API-Key: $ADMIN_API_KEY" \\
                  -H "Authorization: Bearer $(fireblocks-hsm jwt … --path /v1/workspace)" \\
                  …
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: "HTTP method the token is for.")
    var method: String = "GET"

    @Option(help: ArgumentHelp("Request path with /v1 and ?query, percent-encoded, exactly as it will be sent.", valueName: "path"))
    var path: String

    @Option(name: .customLong("body-file"), help: ArgumentHelp("File holding the exact body bytes that will be sent.", valueName: "path"))
    var bodyFile: String?

    func run() throws {
        let profile = try token.loadProfile()
        let signing = try api.signingTarget(profile: profile)
        let jwt = try APIOperations.jwt(token: try token.target(key: key.key ?? profile?.key, profile: profile),
                                      apiKey: signing.apiKey, baseURL: signing.baseURL, jwtLifetime: signing.jwtLifetime,
                                      method: method, path: path, body: try bodyFile.map(RequestBody.readFile),
                                      auditDirectory: audit.directory(profile: profile), observer: Console())
        Console().output(jwt + "\n")
    }
}
