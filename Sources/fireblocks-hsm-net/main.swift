import AsyncHTTPTransport
import FireblocksHSMCommandLine

// `fireblocks-hsm-net`: the companion executable that `fireblocks-hsm` hands every
// NetworkCommand to (request, api-user, onboard, serve, bench proxy). It carries the network
// stack (SwiftNIO, AsyncHTTPClient, Hummingbird), which the signing binary leaves out, and
// parses the very same command tree, so its usage and help read as `fireblocks-hsm …`.
NetworkAccess.install(Network(transport: AsyncHTTPClientTransport(), proxies: NetProxyRunner(), policies: NetPolicyRunner()))
await CommandLineRunner.run(FireblocksHSMCommand.self)
