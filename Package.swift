// swift-tools-version: 6.0
//
// The graph, one way only (docs/architecture.md draws the same):
//
//   ErrorShape    the one shape of library errors (LibraryError: struct codes, facts, location)
//   HexEncoding   lowercase hex, both ways (the one hex encoder)
//   DurableFiles  atomic, durable file writes; inter-process file locks; locked JSON records
//   TransparencyLog  RFC 6962 Merkle tree and proofs, C2SP checkpoints and signed notes, DSSE
//                    (pure formats for the audit trail)
//     -> AuditTrail  a token's append-only JSONL audit log: records, locked durable appends,
//                    verification against checkpoints (+ DurableFiles); AuditAppender for
//                    long-running processes
//   CPKCS11       system library: p11-kit's PKCS#11 headers, module loader, URI parser
//     -> PKCS11         typed wrapper; the only target that imports CPKCS11 (+ HexEncoding;
//                       DurableFiles for TrustedFile, the check of a module file before it runs)
//       -> TokenKeys    key policy, generation, provenance, usable keys and signers, CSRs,
//                       PIN sources, token/key selection (+ HexEncoding; DurableFiles for
//                       TrustedFile, the check of a PIN file's way); no C types
//   JOSE          base64url, JWK, compact JWS, the RS256Signer protocol (sync + async)
//     -> FireblocksAPI  JWTs, the client over an HTTPTransport, retries, clock skew, idempotency,
//                       API users (+ HexEncoding, DurableFiles); no SwiftNIO
//       -> AsyncHTTPTransport  the HTTPTransport over AsyncHTTPClient (the only outbound HTTP)
//       -> FireblocksSandbox  the offline stand-in: pure SandboxService + a Hummingbird 2
//                             server under swift-service-lifecycle (test tool)
//   TokenKeys + FireblocksAPI (+ DurableFiles)
//     -> FireblocksHSM  the use cases (token opening, keys, CSRs, onboarding, API calls; the
//                       token key as an RS256Signer); no terminal I/O, exit code or flag name
//   ProxySettings what `serve` is told (listen address, allow rules, rate, body size, client
//                 tokens, the loopback rule), parsed without the network stack: both executables
//   ProxySettings -> TransactionPolicy  what each client may do, read before the token signs:
//                 the YAML policy (Yams), routes, transaction rules on the request body, exact
//                 decimal amounts, verdicts naming the rule (no SwiftNIO; Yams brings the full
//                 Foundation, so only the companion links it)
//     -> PolicyLimits  the rolling totals, reserved atomically before signing and released when
//                      the upstream refuses: SQLite (sqlite-nio) in the state directory, or
//                      PostgreSQL (postgres-nio) shared by several proxies
//   HTTPServing   the connection policy both HTTP servers share (connection cap, request deadline)
//   FireblocksHSM + HTTPServing + AsyncHTTPTransport (its one AsyncHTTPClient configuration)
//     -> SigningProxy  `serve`: the signing proxy (policy, audit of every request, JWT per request
//                      from the SigningPool, AsyncHTTPClient upstream, /healthz, /metrics)
//   FireblocksHSM -> FireblocksHSMCommandLine  the command line: flags, console, reports, exit codes
//     -> fireblocks-hsm        every command; what talks to the network (`request`, `api-user`,
//                              `approval-key`, `approvals`, `onboard`, `key delete`, `serve`, `bench proxy`, and the hidden
//                              `doctor-network` that `doctor` runs: NetworkCommand) it hands to the
//                              companion below by execv: no SwiftNIO, no HTTP client or server,
//                              no full Foundation, so the one-shot signing commands start fast
//     + AsyncHTTPTransport + SigningProxy -> fireblocks-hsm-net  the companion executable: the
//                              same commands, with the network stack (and TransactionPolicy's
//                              YAML parser: `policy check`, `policy test` and `bench policy`
//                              run there too, as NetworkCommands that open no connection)
//   FireblocksSandbox -> fireblocks-sandbox  the stand-in's executable
//
// Linux only (Debian/Ubuntu with p11-kit and SoftHSM from the distribution): no Apple platform
// is declared, because none is built or tested.
import PackageDescription

let package = Package(
    name: "fireblocks-hsm",
    products: [
        .executable(name: "fireblocks-hsm", targets: ["fireblocks-hsm"]),
        .executable(name: "fireblocks-hsm-net", targets: ["fireblocks-hsm-net"]),
        .executable(name: "fireblocks-sandbox", targets: ["fireblocks-sandbox"]),
        .library(name: "ErrorShape", targets: ["ErrorShape"]),
        .library(name: "PKCS11", targets: ["PKCS11"]),
        .library(name: "TokenKeys", targets: ["TokenKeys"]),
        .library(name: "JOSE", targets: ["JOSE"]),
        .library(name: "FireblocksAPI", targets: ["FireblocksAPI"]),
        .library(name: "AsyncHTTPTransport", targets: ["AsyncHTTPTransport"]),
        .library(name: "FireblocksHSM", targets: ["FireblocksHSM"]),
        .library(name: "ProxySettings", targets: ["ProxySettings"]),
        .library(name: "SigningProxy", targets: ["SigningProxy"]),
        .library(name: "TransactionPolicy", targets: ["TransactionPolicy"]),
        .library(name: "PolicyLimits", targets: ["PolicyLimits"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.22.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.21.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CPKCS11",
            pkgConfig: "p11-kit-1",
            providers: [.apt(["libp11-kit-dev"])]
        ),
        .target(
            name: "ErrorShape",
            dependencies: []
        ),
        .target(
            name: "HexEncoding",
            dependencies: []
        ),
        .target(
            name: "PKCS11",
            dependencies: ["ErrorShape", "CPKCS11", "HexEncoding", "DurableFiles"]
        ),
        .target(
            name: "TokenKeys",
            dependencies: ["ErrorShape", 
                "PKCS11",
                "HexEncoding",
                "DurableFiles",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "JOSE",
            dependencies: []
        ),
        .target(
            name: "DurableFiles",
            dependencies: ["ErrorShape"]
        ),
        .target(
            name: "ProxySettings",
            dependencies: ["ErrorShape", "DurableFiles", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "TransactionPolicy",
            dependencies: [
                "ErrorShape", "ProxySettings", "HexEncoding", "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "PolicyLimits",
            dependencies: [
                "ErrorShape", "TransactionPolicy", "DurableFiles",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TransparencyLog",
            dependencies: ["ErrorShape", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "AuditTrail",
            dependencies: ["ErrorShape", "TransparencyLog", "DurableFiles", "HexEncoding"]
        ),
        .target(
            name: "FireblocksAPI",
            dependencies: ["ErrorShape", 
                "JOSE",
                "HexEncoding",
                "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .target(
            name: "AsyncHTTPTransport",
            dependencies: [
                "FireblocksAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "HTTPServing",
            dependencies: ["ErrorShape", 
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .target(
            name: "FireblocksSandbox",
            dependencies: ["ErrorShape", 
                "FireblocksAPI",
                "HTTPServing",
                "ProxySettings",
                "DurableFiles",
                "JOSE",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FireblocksHSM",
            dependencies: ["ErrorShape", 
                "TokenKeys",
                "AuditTrail",
                "TransparencyLog",
                "HexEncoding",
                "DurableFiles",
                "PKCS11",
                "JOSE",
                "FireblocksAPI",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "SigningProxy",
            dependencies: [
                "FireblocksHSM",
                "AsyncHTTPTransport",
                "FireblocksAPI",
                "TokenKeys",
                "AuditTrail",
                "TransparencyLog",
                "JOSE",
                "HTTPServing",
                "ProxySettings",
                "DurableFiles",
                "ErrorShape",
                "TransactionPolicy",
                "PolicyLimits",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "FireblocksHSMCommandLine",
            dependencies: [
                "FireblocksHSM",
                "ProxySettings",
                "ErrorShape",
                "FireblocksAPI",
                "DurableFiles",
                "HexEncoding",
                "AuditTrail",
                "TransparencyLog",
                "TokenKeys",
                "PKCS11",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "fireblocks-hsm",
            dependencies: ["FireblocksHSMCommandLine"],
            // With --static-swift-stdlib the toolchain exports every symbol of the executable's
            // own objects (about 47,000): each start then pays for them in the dynamic loader
            // (the runtime's dladdr at start-up scans them; every symbol the PKCS#11 module and
            // its libraries look up is first sought among them). Nothing resolves into the
            // executable by name, so it exports nothing (docs/performance.md).
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])]
        ),
        .executableTarget(
            name: "fireblocks-hsm-net",
            dependencies: [
                "FireblocksHSMCommandLine",
                "AsyncHTTPTransport",
                "SigningProxy",
                "TransactionPolicy",
                "PolicyLimits",
                "ProxySettings",
                "FireblocksHSM",
                "FireblocksAPI",
                "PKCS11",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"])]
        ),
        .executableTarget(
            name: "fireblocks-sandbox",
            dependencies: [
                "FireblocksSandbox",
                "FireblocksAPI",
                "DurableFiles",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Test support: throwaway SoftHSM tokens (and PostgreSQL servers) in temporary directories.
        .target(
            name: "SoftHSMTestSupport",
            dependencies: ["PKCS11"],
            path: "Tests/SoftHSMTestSupport"
        ),
        .testTarget(
            name: "PKCS11Tests",
            dependencies: [
                "PKCS11", "SoftHSMTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "TokenKeysTests",
            dependencies: [
                "TokenKeys", "PKCS11", "HexEncoding", "SoftHSMTestSupport",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "APITestSupport",
            dependencies: [
                "FireblocksAPI", "FireblocksSandbox", "FireblocksHSM", "JOSE", "PKCS11", "TokenKeys", "SoftHSMTestSupport",
                "AsyncHTTPTransport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            path: "Tests/APITestSupport"
        ),
        .testTarget(
            name: "HexEncodingTests",
            dependencies: ["HexEncoding"]
        ),
        .testTarget(
            name: "DurableFilesTests",
            dependencies: ["DurableFiles", "ErrorShape"]
        ),
        .testTarget(
            name: "TransactionPolicyTests",
            dependencies: ["TransactionPolicy", "ProxySettings"]
        ),
        .testTarget(
            name: "PolicyLimitsTests",
            dependencies: ["PolicyLimits", "TransactionPolicy", "SoftHSMTestSupport", .product(name: "Logging", package: "swift-log"),
                           .product(name: "SQLiteNIO", package: "sqlite-nio")]
        ),
        .testTarget(
            name: "JOSETests",
            dependencies: ["JOSE"]
        ),
        .testTarget(
            name: "AuditTrailTests",
            dependencies: ["AuditTrail", "TransparencyLog", "DurableFiles", "SoftHSMTestSupport"]
        ),
        .testTarget(
            name: "TransparencyLogTests",
            dependencies: ["TransparencyLog", "HexEncoding", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "FireblocksAPITests",
            dependencies: [
                "FireblocksAPI", "FireblocksSandbox", "FireblocksHSM", "JOSE", "PKCS11", "TokenKeys", "HexEncoding",
                "SoftHSMTestSupport", "APITestSupport", "AsyncHTTPTransport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FireblocksSandboxTests",
            dependencies: [
                "FireblocksSandbox", "FireblocksAPI", "JOSE", "APITestSupport", "AsyncHTTPTransport", "SoftHSMTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .testTarget(
            name: "FireblocksHSMTests",
            dependencies: [
                "FireblocksHSM", "FireblocksAPI", "FireblocksSandbox", "TokenKeys", "PKCS11", "SoftHSMTestSupport",
                "APITestSupport", "AsyncHTTPTransport", "AuditTrail", "DurableFiles", "ErrorShape", "HexEncoding", "TransparencyLog",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "SigningProxyTests",
            dependencies: [
                "SigningProxy", "ProxySettings", "TransactionPolicy", "PolicyLimits", "FireblocksHSM", "FireblocksAPI", "TokenKeys", "AuditTrail", "JOSE", "SoftHSMTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),
        .testTarget(
            name: "AsyncHTTPTransportTests",
            dependencies: ["AsyncHTTPTransport", "FireblocksAPI", "SoftHSMTestSupport"]
        ),
        .testTarget(
            name: "HTTPServingTests",
            dependencies: [
                "HTTPServing", "ProxySettings", "SoftHSMTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "LibraryExamplesTests",
            dependencies: ["PKCS11", "TokenKeys", "JOSE", "FireblocksAPI", "AsyncHTTPTransport", "FireblocksHSM"]
        ),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "fireblocks-hsm", "fireblocks-hsm-net", "fireblocks-sandbox", "FireblocksHSMCommandLine", "FireblocksHSM", "JOSE", "SoftHSMTestSupport",
                "AuditTrail", "TransparencyLog", "ProxySettings",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
    ]
)
