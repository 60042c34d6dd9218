import AuditTrail
import DurableFiles
import ErrorShape
import FireblocksAPI
import FireblocksHSM
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys
import TransparencyLog

/// One error shape across the libraries, and no command-line advice in them.
@Suite("Errors: one shape, facts not flags")
struct ErrorShapeTests {
    /// Errors from each layer, met through the one protocol: a named code, a reason, typed
    /// facts and the file that threw them.
    @Test func errorsOfEveryLayerShareOneShapeAndSayWhereTheyWereThrown() throws {
        let token = try TestToken(labelPrefix: "shape")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("shape-\(UUID())")
        defer { try? FileManager.default.removeItem(at: state) }
        let variable = "SHAPE_PIN_" + String(UInt32.random(in: 0 ... .max), radix: 16).uppercased()
        setenv(variable, token.userPINString, 1)
        let target = TokenTarget(module: .path(SoftHSM.modulePath), token: .label(token.label), key: .label("absent"),
                                 pinSource: .environment(variable))
        var errors: [any LibraryError] = []
        do { _ = try KeyOperations.show(target: target, observer: RecordingObserver()) } catch let error as any LibraryError { errors.append(error) }
        do { _ = try PKCS11URI(parsing: "pkcs11:tokn=x") } catch let error as any LibraryError { errors.append(error) }
        do { _ = try APIBaseURL(validating: "ftp://example.com/v1") } catch let error as any LibraryError { errors.append(error) }
        do { _ = try SignedNote(parsing: "not a note") } catch let error as any LibraryError { errors.append(error) }
        do { _ = try TrustedFile.verify(state.path + "/missing") } catch let error as any LibraryError { errors.append(error) }
        #expect(errors.count == 5)
        for error in errors {
            #expect(!error.code.name.isEmpty && !error.reason.isEmpty, "\(error)")
            #expect(error.location.file.hasSuffix(".swift") && error.location.line > 0, "\(error)")
        }
        let missing = try #require(errors.first)
        #expect(missing.code.name == "keyNotFound")
        #expect(missing.location.file.hasPrefix("FireblocksHSM/") || missing.location.file.hasPrefix("TokenKeys/"), "\(missing.location)")
        #expect(errors.last?.facts.path == state.path + "/missing")
    }

    /// A token operation's failure carries, besides the PKCS#11 call and what it returned, the
    /// token (and key) it was about, as the other errors of the layer do.
    @Test func aTokenOperationsFailureNamesItsTokenAndKey() {
        let failure = PKCS11Error(function: "C_SignInit", returnValue: .keyFunctionNotPermitted)
        let error = TokenOperationError(operation: "signing the CSR on token 'fb'", underlying: failure, tokenLabel: "fb", keyLabel: "ci-bot")
        #expect(error.facts == ErrorFacts(tokenLabel: "fb", keyLabel: "ci-bot", function: "C_SignInit", returnValue: "CKR_KEY_FUNCTION_NOT_PERMITTED"))
        #expect(TokenOperationError(operation: "listing the tokens", underlying: failure).facts.tokenLabel == nil)
    }

    /// The rule for the next engineer: no string below the command line names a flag (the
    /// command line's ErrorReport adds that advice), so a service built on the libraries never
    /// tells its own users to pass `--key`.
    @Test func noLibraryStringNamesAFlag() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let commandLine: Set = ["FireblocksHSMCommandLine", "fireblocks-hsm", "fireblocks-hsm-net", "fireblocks-sandbox", "CPKCS11"]
        let flag = try Regex(#""[^"\n]*--[a-z][a-z-]+"#)
        var found: [String] = []
        var scanned = 0
        for target in try FileManager.default.contentsOfDirectory(atPath: sources.path) where !commandLine.contains(target) {
            let directory = sources.appendingPathComponent(target)
            let files = (FileManager.default.enumerator(atPath: directory.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".swift") }
            for file in files {
                let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
                scanned += 1
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let code = line.drop { $0 == " " }
                    guard !code.hasPrefix("//"), line.contains(flag) else { continue }
                    // The auditor guide's own script calls coreutils with their flags.
                    if line.contains("sha256sum --strict") { continue }
                    found.append("\(target)/\(file):\(number + 1): \(code)")
                }
            }
        }
        #expect(scanned > 50)
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }
}
