import ProxySettings
import Synchronization

/// What each client of the proxy may do (docs/policy.md): the routes it may call and, for
/// `POST /v1/transactions`, the transactions it may create. Deny by default: a client the policy
/// does not name, a route no pattern matches, a transaction no rule allows, and anything the
/// policy cannot evaluate are refused.
public struct Policy: Sendable {
    /// The clients, by the name of their client token.
    public let clients: [String: ClientPolicy]
    /// For requests that carry no client token (nil: such requests are refused).
    public let defaultClient: ClientPolicy?

    /// True when ``defaultClient`` governs every request, with a client token or without (the
    /// policy that allow rules stand for).
    public let defaultGovernsEveryClient: Bool

    /// A policy.
    public init(clients: [String: ClientPolicy], defaultClient: ClientPolicy?) {
        self.clients = clients
        self.defaultClient = defaultClient
        self.defaultGovernsEveryClient = false
    }

    /// The one-rule policy that `METHOD /path` allow rules stand for: every request, with a
    /// client token or without, may use those routes, and no transaction body is read.
    public init(allowing rules: [AllowRule]) {
        self.clients = [:]
        self.defaultClient = ClientPolicy(name: Policy.defaultClientName, routes: rules, transactions: nil, line: nil)
        self.defaultGovernsEveryClient = true
    }

    /// The name the policy gives requests without a client token.
    public static let defaultClientName = "default"

    /// The client's policy: the named one, or the default for a request without a client token.
    /// A named client the policy does not list gets nothing (never the default).
    public func client(named name: String?) -> ClientPolicy? {
        guard let name, !defaultGovernsEveryClient else { return defaultClient }
        return clients[name]
    }
}

/// One client's routes and transaction rules.
public struct ClientPolicy: Sendable {
    /// The client token's name (`default` for requests without one).
    public let name: String
    /// `METHOD /path` patterns it may use.
    public let routes: [AllowRule]
    /// The rules for `POST /v1/transactions`, first applicable wins; nil when the policy does not
    /// read transaction bodies for this client (the route alone decides).
    public let transactions: [TransactionRule]?
    /// Where the client is declared in the policy's text.
    public let line: Int?

    public init(name: String, routes: [AllowRule], transactions: [TransactionRule]?, line: Int?) {
        self.name = name
        self.routes = routes
        self.transactions = transactions
        self.line = line
    }
}

/// One rule for transactions: it applies to the assets it lists, and every condition it states
/// must hold.
public struct TransactionRule: Sendable {
    /// Its name, unique within the client: verdicts name it.
    public let name: String
    /// The `assetId`s it applies to.
    public let assets: Set<String>
    /// The operations it allows (`TRANSFER` unless stated).
    public let operations: Set<String>
    /// The largest `amount` of one transaction.
    public let maximumAmount: ExactDecimal?
    /// The rolling total per asset for this client.
    public let window: RollingWindow?
    /// The vault accounts it may send from (nil: any source).
    public let sourceVaultAccounts: Set<String>?
    /// The destination types it may send to (nil: any).
    public let destinationTypes: Set<String>?
    /// The destination ids it may send to (nil: any); a destination without an id (a one-time
    /// address) is then refused.
    public let destinationIds: Set<String>?
    /// True when `externalTxId` must be given.
    public let requiresExternalTxId: Bool
    /// The `note` rule.
    public let note: NoteRule?
    /// The UTC hours when it allows transactions (nil: at any time).
    public let hours: [TimeWindow]?
    /// Where the rule starts in the policy's text.
    public let line: Int?

    public init(name: String, assets: Set<String>, operations: Set<String> = ["TRANSFER"], maximumAmount: ExactDecimal? = nil,
                window: RollingWindow? = nil, sourceVaultAccounts: Set<String>? = nil, destinationTypes: Set<String>? = nil,
                destinationIds: Set<String>? = nil, requiresExternalTxId: Bool = false, note: NoteRule? = nil,
                hours: [TimeWindow]? = nil, line: Int? = nil) {
        self.name = name
        self.assets = assets
        self.operations = operations
        self.maximumAmount = maximumAmount
        self.window = window
        self.sourceVaultAccounts = sourceVaultAccounts
        self.destinationTypes = destinationTypes
        self.destinationIds = destinationIds
        self.requiresExternalTxId = requiresExternalTxId
        self.note = note
        self.hours = hours
        self.line = line
    }
}

/// At most ``maximumTotal`` of one asset over the last ``seconds``, per client.
public struct RollingWindow: Sendable, Hashable {
    /// The window's length.
    public let seconds: Int64
    /// The most it may total.
    public let maximumTotal: ExactDecimal

    public init(seconds: Int64, maximumTotal: ExactDecimal) {
        self.seconds = seconds
        self.maximumTotal = maximumTotal
    }
}

/// What the `note` must be.
public struct NoteRule: Sendable {
    /// True when a note must be given.
    public let required: Bool
    /// A pattern the whole note must match, as written in the policy.
    public let pattern: String?
    /// The pattern, compiled once (compiling it for each note cost tens of µs per request).
    private let compiled: CompiledPattern?

    /// A note rule; the pattern must compile (without capture groups).
    public init(required: Bool, pattern: String?) throws {
        self.compiled = try pattern.map { CompiledPattern(try Regex($0, as: Substring.self)) }
        self.required = required
        self.pattern = pattern
    }

    /// True when `note` (nil when absent) satisfies the rule.
    public func allows(_ note: String?) -> Bool {
        guard let note else { return !required && pattern == nil }
        guard let compiled else { return true }
        return compiled.wholeMatches(note)
    }
}

/// A compiled pattern that requests judged at once may share: `Regex` is not `Sendable`, so
/// it is used under a lock (a note is short; the match takes microseconds).
private final class CompiledPattern: Sendable {
    private let regex: Mutex<Regex<Substring>>

    init(_ regex: sending Regex<Substring>) { self.regex = Mutex(regex) }

    func wholeMatches(_ text: String) -> Bool {
        regex.withLock { (try? $0.wholeMatch(in: text)) != nil }
    }
}

/// Days of the week and a span of UTC time within each, `from` included, `to` excluded.
public struct TimeWindow: Sendable, Hashable {
    /// Days, 0 = Monday … 6 = Sunday.
    public let days: Set<Int>
    /// Minutes after midnight UTC.
    public let fromMinute: Int
    /// Minutes after midnight UTC, after ``fromMinute``.
    public let toMinute: Int

    public init(days: Set<Int>, fromMinute: Int, toMinute: Int) {
        self.days = days
        self.fromMinute = fromMinute
        self.toMinute = toMinute
    }

    /// The day names, in order.
    public static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    /// True when the instant (seconds since 1970-01-01T00:00:00Z) falls within.
    public func contains(secondsSince1970 seconds: Int64) -> Bool {
        let (days, rest) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let dayNumber = rest < 0 ? days - 1 : days
        let secondOfDay = rest < 0 ? rest + 86_400 : rest
        // 1970-01-01 was a Thursday (3 when Monday is 0).
        let weekday = Int(((dayNumber % 7) + 7 + 3) % 7)
        let minute = Int(secondOfDay / 60)
        return self.days.contains(weekday) && minute >= fromMinute && minute < toMinute
    }
}
