import DurableFiles
import Foundation
import Synchronization
import Testing

@Suite("Durable files")
struct DurableFilesTests {
    private func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("durable-\(UUID())").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func writesWholeWithItsModeAndRefusesToReplaceUnlessAsked() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/out"
        try AtomicFile.write(Array("one".utf8), to: path, overwrite: false, mode: 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: FileOutputError(path: "", reason: "", code: .exists)) {
            try AtomicFile.write(Array("two".utf8), to: path, overwrite: false)
        }
        try AtomicFile.write(Array("two".utf8), to: path, overwrite: true)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        // No temporary file is left behind, whatever happened.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out"])
    }

    @Test func aDirectoryThatCannotExistIsAnIOError() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data().write(to: URL(fileURLWithPath: dir + "/file"))
        #expect(throws: FileOutputError(path: "", reason: "", code: .unwritable)) {
            try AtomicFile.write([1], to: dir + "/file/below", overwrite: true)
        }
    }

    @Test func aHeldLockMakesOthersWaitThenFailNamingTheHolder() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/locks/a.lock"
        let held = try FileLock.acquire(path, timeout: 0, note: "pid 1: test holder")
        let waited = Box()
        let failure = Result { try FileLock.acquire(path, timeout: 0.2) { waited.value = $0 }.release() }
        if case .failure(let error as FileOutputError) = failure {
            #expect(error.code == .locked)
            #expect(error.reason.contains("test holder"))
        } else {
            Issue.record("the lock was taken twice")
        }
        #expect(waited.value == "pid 1: test holder")
        held.release()
        try FileLock.acquire(path, timeout: 0).release()
    }

    @Test func lockedUpdatesFromManyThreadsAreAllKept() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = LockedJSONFile<[Int]>(path: dir + "/numbers.json") { [] }
        DispatchQueue.concurrentPerform(iterations: 20) { index in
            _ = try? file.update { $0.append(index) }
        }
        #expect(try file.read().sorted() == Array(0..<20))
    }

    @Test func aFileThatIsNotARecordIsReportedNotOverwritten() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/numbers.json"
        try Data("not json".utf8).write(to: URL(fileURLWithPath: path))
        let file = LockedJSONFile<[Int]>(path: path) { [] }
        #expect(throws: FileOutputError.self) { try file.update { $0.append(1) } }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "not json")
    }
}

private final class Box: Sendable {
    private let stored = Mutex<String?>(nil)
    var value: String? {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}

@Suite("Durable files: planted symlinks")
struct DurableFilesSymlinkTests {
    @Test func aSymlinkAtTheLockPathIsRefusedAndItsTargetUntouched() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("durable-link-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.createSymbolicLink(atPath: dir + "/a.lock", withDestinationPath: victim)
        #expect(throws: FileOutputError.self) { try FileLock.acquire(dir + "/a.lock", timeout: 0, note: "pid 1").release() }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
    }

    @Test func aSymlinkAtTheTargetIsReplacedNotWrittenThrough() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("durable-link-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.createSymbolicLink(atPath: dir + "/state.json", withDestinationPath: victim)
        try AtomicFile.write(Array("new".utf8), to: dir + "/state.json", overwrite: true)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
        #expect(try String(contentsOfFile: dir + "/state.json", encoding: .utf8) == "new")
    }
}

@Suite("Text lines as people write them")
struct TextLinesTests {
    @Test func lineEndsABOMAndTrailingBlanksAreNotPartOfTheLines() throws {
        let lines = try TextLines.parse(Array("\u{FEFF}a b \r\n\tc\t\n\nlast".utf8))
        #expect(lines.map(\.text) == ["a b", "\tc", "", "last"])
        #expect(lines.map(\.number) == [1, 2, 3, 4])
        #expect(try TextLines.parse(Array("".utf8)).isEmpty)
    }

    @Test func whatIsNotTextIsRefusedWithItsLineNumber() {
        for (bytes, line) in [(Array("ok\nx\ry\n".utf8), 2), (Array("ok\n".utf8) + [0xFF, 0x0A], 2), (Array("\u{1B}[2J\n".utf8), 1)] {
            let refusal = #expect(throws: TextLines.Refusal.self) { try TextLines.parse(bytes) }
            #expect(refusal?.line == line)
        }
    }
}

@Suite("File locks whose file is replaced")
struct LockFileReplacementTests {
    @Test func aLockFileReplacedWhileHeldIsNotLockedApartFromIt() throws {
        let directory = NSTemporaryDirectory() + "lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/x.lock"
        let long = try ReusableFileLock(path)
        try long.lock(timeout: 1)
        long.unlock()
        // Replaced underneath (as whoever can write the directory could).
        try FileManager.default.removeItem(atPath: path)
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        let held = try FileLock.acquire(path, timeout: 1)
        // The long-lived lock now locks the file at the path, which is held: it must wait.
        #expect(throws: FileOutputError.self) { try long.lock(timeout: 0.3) }
        held.release()
        try long.lock(timeout: 1)
        // And the other way round: a one-shot lock waits for the long-lived one.
        #expect(throws: FileOutputError.self) { try FileLock.acquire(path, timeout: 0.3) }
        long.unlock()
    }
}

@Suite("Trusted files: one rule")
struct TrustedFileRuleTests {
    @Test func aLinkIsJudgedWhereItLeadsAndWhereItSits() throws {
        let base = NSTemporaryDirectory() + "trusted-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base + "/safe", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createDirectory(atPath: base + "/open", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(base + "/open", 0o777)
        try Data("x".utf8).write(to: URL(fileURLWithPath: base + "/safe/file"))
        chmod(base + "/safe/file", 0o600)
        #expect(try TrustedFile.verify(base + "/safe/file").hasSuffix("/safe/file"))
        try FileManager.default.createSymbolicLink(atPath: base + "/open/link", withDestinationPath: base + "/safe/file")
        let refused = #expect(throws: TrustedFileError.self) { try TrustedFile.verify(base + "/open/link") }
        #expect(refused?.code == .writableByOthers)
        if case .linkDirectory(let path)? = refused?.subject { #expect(path.hasSuffix("/open")) } else { Issue.record("\(String(describing: refused))") }
        #expect(refused.flatMap(TrustedFile.remedy(for:))?.hasPrefix("chmod go-w") == true)
        // A path that cannot be examined is refused, never let through.
        #expect(throws: TrustedFileError.self) { try TrustedFile.verify(base + "/safe/missing") }
    }

    /// Not only the file's own directory: every directory a name is looked up in on the way
    /// (whoever can write one can rename what is below it), and those a symlink's target passes
    /// through, and the symlink's owner. A sticky directory (as /tmp) passes.
    @Test func everyDirectoryOnTheWayIsJudged() throws {
        let base = NSTemporaryDirectory() + "trusted-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let up = base + "/up"
        try FileManager.default.createDirectory(atPath: up + "/down", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let file = up + "/down/module.so"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o755)
        #expect(try TrustedFile.verify(file) == file)

        chmod(up, 0o777)
        let open = #expect(throws: TrustedFileError.self) { try TrustedFile.verify(file) }
        #expect(open?.code == .writableByOthers && open?.subject == .ancestorDirectory(up), "\(String(describing: open))")
        #expect(open?.description.contains("directory \(up), on the way to it") == true)
        #expect(open.flatMap(TrustedFile.remedy(for:)) == "chmod go-w '\(up)'")
        // Reached through a link elsewhere: the way to its target is judged all the same.
        try FileManager.default.createSymbolicLink(atPath: base + "/link.so", withDestinationPath: "up/down/module.so")
        #expect((#expect(throws: TrustedFileError.self) { try TrustedFile.verify(base + "/link.so") })?.subject == .ancestorDirectory(up))

        chmod(up, 0o1777)
        #expect(try TrustedFile.verify(file) == file, "sticky: only an entry's owner renames it")
        #expect(try TrustedFile.verify(base + "/link.so") == file)
        chmod(up, 0o755)

        #expect(chown(up, 65534, 65534) == 0, "the tests run as root")
        #expect((#expect(throws: TrustedFileError.self) { try TrustedFile.verify(file) })?.code == .otherOwner)
        #expect(chown(up, getuid(), getgid()) == 0)

        #expect(lchown(base + "/link.so", 65534, 65534) == 0)
        let link = #expect(throws: TrustedFileError.self) { try TrustedFile.verify(base + "/link.so") }
        #expect(link?.code == .otherOwner && link?.subject == .file(base + "/link.so"), "\(String(describing: link))")
    }

    /// One rule set for every use; a secret adds only that nobody else may read it, and a read
    /// is of the file that was checked, up to its limit.
    @Test func oneRuleSetForCodeConfigurationAndSecrets() throws {
        let base = NSTemporaryDirectory() + "trusted-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let file = base + "/tokens"
        try Data("payouts 0123456789abcdef0123\n".utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o644)
        for use in [TrustedFile.Use.runs, .configures] { #expect(throws: Never.self) { try TrustedFile.verify(file, for: use) } }
        let readable = #expect(throws: TrustedFileError.self) { try TrustedFile.read(file, for: .secret, limit: 1024) }
        #expect(readable?.code == .readableByOthers)
        #expect(readable.flatMap(TrustedFile.remedy(for:)) == "chmod 600 '\(file)'")
        chmod(file, 0o600)
        #expect(try TrustedFile.read(file, for: .secret, limit: 1024) == Array("payouts 0123456789abcdef0123\n".utf8))
        #expect(throws: TrustedFileError.self) { try TrustedFile.read(file, for: .secret, limit: 8) }
        // Writable by others is refused for every use, the file or its directory.
        chmod(file, 0o620)
        for use in [TrustedFile.Use.runs, .configures, .secret] {
            #expect((#expect(throws: TrustedFileError.self) { try TrustedFile.verify(file, for: use) })?.code == .writableByOthers)
        }
        chmod(file, 0o600)
        chmod(base, 0o777)
        for use in [TrustedFile.Use.runs, .configures, .secret] {
            let refused = #expect(throws: TrustedFileError.self) { try TrustedFile.verify(file, for: use) }
            #expect(refused?.subject == .directory(base))
        }
        chmod(base, 0o700)
        // A FIFO or a directory is not a file to trust.
        #expect(mkfifo(base + "/fifo", 0o600) == 0)
        #expect((#expect(throws: TrustedFileError.self) { try TrustedFile.read(base + "/fifo", for: .configures, limit: 10) })?.code == .notARegularFile)
        // Errors carry where they were made.
        #expect(readable?.location.file == "DurableFiles/TrustedFile.swift")
    }
}

@Suite("Writes in place never go through a second name")
struct HardLinkTests {
    @Test func aLockNoteIsNotWrittenIntoAFileHardLinkedAtTheLocksPath() throws {
        let directory = NSTemporaryDirectory() + "hardlink-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let precious = directory + "/precious"
        try Data("keep me\n".utf8).write(to: URL(fileURLWithPath: precious))
        #expect(link(precious, directory + "/x.lock") == 0)
        let lock = try FileLock.acquire(directory + "/x.lock", timeout: 1, note: "pid 1: something")
        lock.release()
        #expect(try String(contentsOfFile: precious, encoding: .utf8) == "keep me\n")
    }
}
