import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

package struct RequestCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Send any API request signed with the token key (curl-like).",
        discussion: """
            Prints the response body on stdout; the status and X-Request-ID on stderr.
            The body is sent exactly as given (hash and bytes agree). GET, and requests
            with --idempotency-key, are retried on network errors, 5xx and 429.

            Examples:
              fireblocks-hsm request GET /v1/workspace --token fb --key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm request POST /v1/management/api_users/$ID/pairing_token \\
                  --idempotency-key "$(uuidgen)" …
              fireblocks-hsm request POST /v1/vault/accounts --data @account.json …
            """
    )

    @Argument(help: "HTTP method: GET, POST, PUT, PATCH, DELETE.")
    var method: String

    @Argument(help: "Path with /v1 and ?query, percent-encoded.")
    var path: String

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Body: literal JSON, or @FILE for a file's exact bytes.", valueName: "json|@file"))
    var data: String?

    @Option(name: .customLong("idempotency-key"), help: "Idempotency-Key header (makes a POST safe to retry).")
    var idempotencyKey: String?

    @Flag(help: "Print {status, requestID, body} as one JSON document.")
    var json = false

    package func validate() throws {
        guard ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method.uppercased()) else {
            throw ValidationError("method must be GET, POST, PUT, PATCH or DELETE")
        }
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
    }

    package func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        let response = try await APIOperations.request(
            token: try token.target(key: key.key ?? profile?.key, profile: profile), api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport),
            method: method, path: path, body: try RequestBody.read(data: data), idempotencyKey: idempotencyKey,
            observer: Console())
        let console = Console()
        console.diagnostic("HTTP \(response.status) [X-Request-ID: \(response.requestID ?? "none")]")
        if json {
            let body = (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))
                ?? .string(String(decoding: response.body, as: UTF8.self))
            let document: JSONValue = .object(["status": .number(Decimal(response.status)),
                                               "requestID": response.requestID.map(JSONValue.string) ?? .null, "body": body])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            console.output(String(decoding: try encoder.encode(document), as: UTF8.self) + "\n")
        } else {
            console.output(bytes: response.body)
            if let last = response.body.last, last != UInt8(ascii: "\n"), console.standardOutputIsTerminal { console.output("\n") }
        }
    }
}
