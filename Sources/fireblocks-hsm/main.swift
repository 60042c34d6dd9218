import FireblocksHSMCommandLine

// The command line lives in FireblocksHSMCommandLine, shared with the companion executable
// fireblocks-hsm-net (the commands that use the network).
await CommandLineRunner.run(FireblocksHSMCommand.self)
