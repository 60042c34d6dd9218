import AuditTrail
import Dispatch
import FireblocksHSM
import Foundation
import Logging
import Synchronization
import TransparencyLog

/// The proxy's audit trail: every request recorded through an ``AuditAppender`` on one serial
/// queue (records in order, `fdatasync` off Swift's cooperative pool), a checkpoint signed on
/// the token every N records or T seconds and at shutdown.
///
/// The ``AuditService`` (and its token session, which is not `Sendable`) lives behind a
/// `Mutex` that only work on `queue` takes: the queue keeps the records in order, the lock lets
/// the compiler check that the session is never used by two threads (it is never contended).
final class ProxyAuditor: Sendable {
    private let queue = DispatchQueue(label: "fireblocks-hsm.proxy.audit")
    private let appender: AuditAppender
    private let trail: Mutex<Trail>
    private let every: Int
    private let logger: Logger
    private let snapshot = Mutex<Status>(Status())
    /// The audit directory's free space, against the threshold the proxy keeps.
    let disk: AuditDiskMonitor
    /// Whether the last reading was low (its changes are logged once, not per request).
    private let diskWasLow = Mutex(false)

    /// What the checkpoints need: the token's audit service, and the records since the last one.
    private struct Trail {
        let service: AuditService
        var pending = 0
    }

    /// What `/healthz` reports of the trail.
    struct Status: Sendable {
        /// Records in the log.
        var records = 0
        /// The size of the last checkpoint signed.
        var checkpoint = 0
        /// The last failure to write a record (cleared by the next record written).
        var failure: String?
        /// The last failure to sign and anchor a checkpoint: cleared only by a checkpoint that
        /// succeeds (records written meanwhile are not sealed).
        var checkpointFailure: String?
    }

    init(service: sending AuditService, every: Int, minimumFree: AuditDiskThreshold, diskInterval: Duration, logger: Logger) throws {
        try service.requireWritable()
        disk = AuditDiskMonitor(directory: service.log.directory.path, threshold: minimumFree, interval: diskInterval)
        guard try service.auditKey(create: true) != nil else {
            throw ProxyConfigurationError(.auditUnavailable, "no audit key on the token")
        }
        self.appender = try service.appender()
        self.trail = Mutex(Trail(service: service))
        self.every = every
        self.logger = logger
        snapshot.withLock { $0.records = appender.size }
    }

    /// Appends one record; with `sync` it is on disk when this returns. Throws when it cannot be
    /// written: the caller then refuses the request (fail closed).
    @discardableResult
    func record(_ entry: AuditEntry, sync: Bool) async throws -> Int {
        try await onQueue { try self.appendOnQueue(entry, sync: sync, clearingFailure: true) }
    }

    /// Appends one record without waiting for it (in order with every other record, written
    /// without sync; on disk with the next synced record or checkpoint): for what need not
    /// hold up an answer, such as a request's outcome. A failure is logged and reported by
    /// `/healthz`; the next request's own record then fails and is refused.
    func recordLater(_ entry: AuditEntry) {
        queue.async {
            do {
                _ = try self.appendOnQueue(entry, sync: false, clearingFailure: false)
            } catch {
                self.logger.error("cannot write an audit record", metadata: ["event": "\(entry.event)", "error": "\(error)"])
            }
        }
    }

    /// Records `api-user.created` for a creation this proxy forwarded and Fireblocks accepted
    /// (later, in order, like a request's outcome): the name and role from the body it signed,
    /// the id from the answer when it names one, the CSR's and its key's digests, and whether
    /// that key is on this token. A body it cannot read is recorded as such.
    func recordAPIUserCreated(requestBody: [UInt8], answer: [UInt8]?, request: Int, requestID: String?, client: String) {
        struct Body: Decodable { let name: String?; let role: String?; let csrPem: String? }
        struct Answer: Decodable { let id: String? }
        queue.async {
            let body = try? JSONDecoder().decode(Body.self, from: Data(requestBody))
            let userID = answer.flatMap { try? JSONDecoder().decode(Answer.self, from: Data($0)) }?.id
            let extra: [String: AuditValue] = ["request": .integer(request), "xRequestID": .string(requestID ?? ""),
                                               "client": .string(client), "via": .string("serve")]
            let entry: AuditEntry
            if let body, let csrPem = body.csrPem, let key = self.trail.withLock({ try? $0.service.csrKeyFacts(csrPEM: csrPem) }) {
                entry = key.entry(name: body.name ?? "", role: body.role ?? "", userID: userID, extra: extra)
            } else {
                entry = AuditEntry(event: "api-user.created", outcome: .failed("the request body names no readable CSR"),
                                   facts: extra.merging(["name": .string(body?.name ?? ""), "role": .string(body?.role ?? ""),
                                                         "apiUserID": .string(userID ?? "")]) { $1 })
            }
            do {
                _ = try self.appendOnQueue(entry, sync: false, clearingFailure: false)
            } catch {
                self.logger.error("cannot write an audit record", metadata: ["event": "\(entry.event)", "error": "\(error)"])
            }
        }
    }

    /// The append itself (on `queue`): counts it towards the next checkpoint, signs one when due,
    /// and keeps `/healthz`'s view of the trail.
    private func appendOnQueue(_ entry: AuditEntry, sync: Bool, clearingFailure: Bool) throws -> Int {
        do {
            let seq = try appender.append([entry], sync: sync)
            let pending = trail.withLock { trail in
                trail.pending += 1
                return trail.pending
            }
            snapshot.withLock { state in
                state.records = seq + 1
                if clearingFailure { state.failure = nil }
            }
            if pending >= every { sealOnQueue() }
            return seq
        } catch {
            snapshot.withLock { $0.failure = "\(error)" }
            // The disk may have filled up: the next request measures again.
            disk.invalidate()
            throw error
        }
    }

    /// Signs a checkpoint if anything was recorded since the last one.
    func checkpointIfNeeded() async {
        await onQueue { if self.trail.withLock({ $0.pending }) > 0 { self.sealOnQueue() } }
    }

    /// The audit disk's reading (measured at most once a second, and again after a write
    /// failed). Its changes are logged once each: low (with the directory, what is free and
    /// the threshold, for the operator), and room again.
    var diskReading: AuditDiskMonitor.Reading {
        let reading = disk.reading
        let low = reading.isLow
        guard diskWasLow.withLock({ wasLow in
            defer { wasLow = low }
            return wasLow != low
        }) else { return reading }
        if low {
            let measured = reading.space.map { space in
                "\(AuditDiskSpace.format(space.availableBytes)) free (\(space.availableBytes) bytes), under the \(AuditDiskSpace.format(reading.minimumFreeBytes ?? 0)) kept free (\(disk.threshold))"
            } ?? "its free space cannot be measured (\(reading.failure ?? "unknown"))"
            logger.error("the audit directory's filesystem is low on space: every request is refused (503) until space is freed", metadata: [
                "audit.directory": "\(disk.directory)", "audit.disk": "\(measured)",
            ])
        } else {
            logger.notice("the audit directory's filesystem has room again: requests are served", metadata: [
                "audit.directory": "\(disk.directory)", "audit.disk.free": "\(reading.space?.availableBytes ?? 0)",
            ])
        }
        return reading
    }

    /// Records in the log, the size of the last checkpoint, and the last failures, if any.
    var status: Status { snapshot.withLock { $0 } }

    private func sealOnQueue() {
        do {
            let note = try trail.withLock { trail in
                let note = try trail.service.seal(appender)
                trail.pending = 0
                return note
            }
            let size = (try? Checkpoint(noteText: note.text).treeSize) ?? 0
            snapshot.withLock {
                $0.checkpoint = size
                $0.checkpointFailure = nil
            }
            logger.debug("audit checkpoint signed", metadata: ["records": "\(size)"])
        } catch {
            snapshot.withLock { $0.checkpointFailure = "\(error)" }
            logger.error("cannot sign the audit checkpoint", metadata: ["error": "\(error)"])
        }
    }

    private func onQueue<R: Sendable>(_ work: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    private func onQueue(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            queue.async { work(); continuation.resume() }
        }
    }
}
