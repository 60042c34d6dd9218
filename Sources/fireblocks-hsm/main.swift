import FireblocksHSMCommandLine

// The command line lives in FireblocksHSMCommandLine, shared with the companion executable
// fireblocks-hsm-serve (serve, bench proxy).
await CommandLineRunner.run(FireblocksHSMCommand.self)
