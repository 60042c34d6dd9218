// The commands with --json: a failure prints one {"error": …} document on stdout too.
extension APIUserCreateCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension APIUserListCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension CSRSubcommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension KeyDeleteCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension KeyGenerateCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension KeyListCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension KeyShowCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension OnboardSubcommand: JSONReporting { package var wantsJSON: Bool { output.json } }
extension RequestCommand: JSONReporting { package var wantsJSON: Bool { json } }
extension TokenInitCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension TokenListCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditInitCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditShowCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditVerifyCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditProofCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditTilesCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension AuditReanchorCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension BenchSignCommand: JSONReporting { var wantsJSON: Bool { json } }
extension APIUserShowCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension APIUserWaitCommand: JSONReporting { var wantsJSON: Bool { output.json } }
extension APIUserPairingTokenCommand: JSONReporting { var wantsJSON: Bool { json } }
