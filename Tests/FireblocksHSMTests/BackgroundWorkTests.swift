import FireblocksHSM
import Synchronization
import Testing

/// A value that is not `Sendable`: what `BlockingBridge.run` moves between a worker thread and
/// the awaiting task (its `Moved` box is `@unchecked Sendable` on the invariant that only one
/// side holds the value at a time).
private final class Unshared {
    var numbers: [Int]
    init(_ numbers: [Int]) { self.numbers = numbers }
}

@Suite("Background work: values moved to and from worker threads")
struct BackgroundWorkTests {
    /// Many tasks at once hand a value to a worker thread, which changes it and hands it back:
    /// each gets its own value back, whole, as the worker left it.
    @Test func valuesMovedToWorkerThreadsComeBackWholeUnderConcurrency() async throws {
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for task in 0..<64 {
                group.addTask {
                    let made = try await BlockingBridge.run { Unshared(Array(0..<task)) }
                    let changed = try await BlockingBridge.run(moving: made) { value in
                        value.numbers.append(-task)
                        return value.numbers.count
                    }
                    return changed == task + 1 && made.numbers.last == -task && made.numbers.dropLast() == ArraySlice(0..<task)
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.count == 64 && results.allSatisfy { $0 })
    }
}
