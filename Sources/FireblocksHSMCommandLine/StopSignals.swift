import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// SIGINT and SIGTERM as a request to stop a loop that follows something (`audit show
/// --follow`): the signals no longer end the process at once; the loop sees `received`, and
/// `wait` returns as soon as one arrives.
final class StopSignals {
    /// What the signal handlers (on their own queue) and the loop share.
    private final class Shared: Sendable {
        let flag = Atomic<Bool>(false)
        let wakeUp = DispatchSemaphore(value: 0)
    }

    private let shared = Shared()
    /// Kept for as long as the loop runs (a released source stops delivering).
    private var sources: [any DispatchSourceSignal] = []

    init() {
        let queue = DispatchQueue(label: "fireblocks-hsm.stop-signals")
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler { [shared] in
                shared.flag.store(true, ordering: .sequentiallyConsistent)
                shared.wakeUp.signal()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Whether SIGINT or SIGTERM arrived.
    var received: Bool { shared.flag.load(ordering: .sequentiallyConsistent) }

    /// Sleeps `seconds`, or less when a signal arrives.
    func wait(seconds: Double) {
        _ = shared.wakeUp.wait(timeout: .now() + seconds)
    }
}
