// Foundation, not only FoundationEssentials: JSONSerialization parses and checks a whole body.
import Foundation

/// The request the policy judges: what the proxy knows before anything is signed.
public struct PolicyRequest: Sendable {
    /// `GET`, `POST`, …
    public let method: String
    /// The path's segments, after the leading `/` (no query).
    public let segments: [Substring]
    /// The client token's name, nil for a request without one.
    public let client: String?
    /// The body as received (empty for none).
    public let body: [UInt8]
    /// When, in seconds since 1970-01-01T00:00:00Z (for the UTC hours).
    public let secondsSince1970: Int64

    /// A request whose path was already checked (the proxy's `RequestPath`).
    public init(method: String, segments: [Substring], client: String?, body: [UInt8], secondsSince1970: Int64) {
        self.method = method.uppercased()
        self.segments = segments
        self.client = client
        self.body = body
        self.secondsSince1970 = secondsSince1970
    }

    /// A request from its path and query: nil when the path is not one the policy can judge (not
    /// absolute, empty or dot segments, percent-encoding).
    public init?(method: String, target: String, client: String?, body: [UInt8], secondsSince1970: Int64) {
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path.hasPrefix("/"), !path.contains("%") else { return nil }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        self.init(method: method, segments: segments, client: client, body: body, secondsSince1970: secondsSince1970)
    }

    /// True for `POST /v1/transactions`, whose body the transaction rules read.
    public var createsTransaction: Bool { method == "POST" && segments == ["v1", "transactions"] }
}

/// What a transaction request asks for, as far as the policy reads it: what a denial records
/// (never the whole body).
public struct TransactionFacts: Sendable, Hashable, Codable {
    public var operation: String?
    public var assetId: String?
    /// The amount as sent (a decimal string), when it is one.
    public var amount: String?
    public var sourceType: String?
    public var sourceId: String?
    public var destinationType: String?
    public var destinationId: String?
    public var externalTxId: String?

    public init() {}
}

/// A rolling total to reserve before signing: ``amount`` of ``assetId`` for ``client`` within
/// the rule's window. The store refuses it when the window's total would pass the maximum.
public struct WindowReservation: Sendable, Hashable {
    /// The client's name (`default` without a client token).
    public let client: String
    /// The rule that set the window.
    public let rule: String
    public let assetId: String
    public let amount: ExactDecimal
    public let window: RollingWindow

    public init(client: String, rule: String, assetId: String, amount: ExactDecimal, window: RollingWindow) {
        self.client = client
        self.rule = rule
        self.assetId = assetId
        self.amount = amount
        self.window = window
    }
}

/// The policy's answer for one request.
public struct Verdict: Sendable, Hashable {
    /// Allowed (subject to ``reservation``) or denied.
    public let allowed: Bool
    /// The client the request was judged as (`default` without a client token).
    public let client: String
    /// The rule that decided: `routes`, a transaction rule's name, or `transactions` when none applied.
    public let rule: String
    /// Which condition decided: `route`, `client`, `body`, `asset`, `operation`, `maxAmount`,
    /// `window`, `source`, `destinationType`, `destinationId`, `externalTxId`, `note`, `hours`,
    /// or `allowed`.
    public let check: String
    /// Why, in one line (no secret, no whole body).
    public let reason: String
    /// What the transaction asked for, for a transaction request whose body could be read.
    public let facts: TransactionFacts?
    /// The rolling total to reserve before signing, when the rule has a window.
    public let reservation: WindowReservation?

    public init(allowed: Bool, client: String, rule: String, check: String, reason: String, facts: TransactionFacts?,
                reservation: WindowReservation?) {
        self.allowed = allowed
        self.client = client
        self.rule = rule
        self.check = check
        self.reason = reason
        self.facts = facts
        self.reservation = reservation
    }

    static func deny(_ client: String, rule: String, check: String, _ reason: String, facts: TransactionFacts? = nil) -> Verdict {
        Verdict(allowed: false, client: client, rule: rule, check: check, reason: reason, facts: facts, reservation: nil)
    }
}

extension Policy {
    /// The verdict for `request`. Deny by default: a client the policy does not name, a route no
    /// pattern matches, a transaction no rule allows, and a body the policy cannot read (not JSON,
    /// a field it does not know, a value of another shape, an amount that is not a decimal
    /// string) are denied, naming the rule and the check.
    public func evaluate(_ request: PolicyRequest) -> Verdict {
        let clientName = request.client ?? Policy.defaultClientName
        guard let client = client(named: request.client) else {
            let reason = request.client == nil
                ? "the policy has no 'default' for requests without a client token"
                : "the policy does not name client '\(clientName)'"
            return .deny(clientName, rule: "clients", check: "client", reason)
        }
        guard client.routes.contains(where: { $0.allows(method: request.method, segments: request.segments) }) else {
            return .deny(clientName, rule: "routes", check: "route",
                         "no route of client '\(clientName)' allows \(request.method) /\(request.segments.joined(separator: "/"))")
        }
        guard request.createsTransaction, let rules = client.transactions else {
            return Verdict(allowed: true, client: clientName, rule: "routes", check: "allowed",
                           reason: "a route of client '\(clientName)' allows it", facts: nil, reservation: nil)
        }
        let transaction: TransactionBody
        do {
            transaction = try TransactionBody(request.body)
        } catch {
            return .deny(clientName, rule: "transactions", check: "body", "the body cannot be evaluated: \(error.reason)", facts: error.facts)
        }
        let facts = transaction.facts
        guard let assetId = transaction.assetId else {
            return .deny(clientName, rule: "transactions", check: "asset", "the transaction names no assetId", facts: facts)
        }
        guard let rule = rules.first(where: { $0.assets.contains(assetId) }) else {
            return .deny(clientName, rule: "transactions", check: "asset",
                         "no transaction rule of client '\(clientName)' allows asset '\(shown(assetId))'", facts: facts)
        }
        return rule.evaluate(transaction, client: clientName, at: request.secondsSince1970)
    }
}

extension TransactionRule {
    func evaluate(_ transaction: TransactionBody, client: String, at seconds: Int64) -> Verdict {
        let facts = transaction.facts
        func deny(_ check: String, _ reason: String) -> Verdict {
            .deny(client, rule: name, check: check, reason, facts: facts)
        }
        let operation = transaction.operation ?? "TRANSFER"
        guard operations.contains(operation) else {
            return deny("operation", "operation \(shown(operation)) is not one rule '\(name)' allows (\(operations.sorted().joined(separator: ", ")))")
        }
        guard let amount = transaction.amount else {
            return deny("maxAmount", "the transaction has no amount")
        }
        if let maximumAmount, maximumAmount < amount {
            return deny("maxAmount", "amount \(amount) is over the rule's maximum of \(maximumAmount) per transaction")
        }
        if let window, window.maximumTotal < amount {
            return deny("window", "amount \(amount) alone is over the rule's total of \(window.maximumTotal) per window")
        }
        if let sourceVaultAccounts {
            guard transaction.sourceType == "VAULT_ACCOUNT", let id = transaction.sourceId, sourceVaultAccounts.contains(id) else {
                let source = transaction.sourceType.map { "\(shown($0)) \(transaction.sourceId.map(shown) ?? "(no id)")" } ?? "no source (vault account 0)"
                return deny("source", "the source, \(source), is not a vault account rule '\(name)' allows")
            }
        }
        if let destinationTypes {
            guard let type = transaction.destinationType, destinationTypes.contains(type) else {
                return deny("destinationType", "destination type \(transaction.destinationType.map(shown) ?? "(none)") is not one rule '\(name)' allows")
            }
        }
        if let destinationIds {
            guard let id = transaction.destinationId, destinationIds.contains(id) else {
                return deny("destinationId", "destination \(transaction.destinationId.map(shown) ?? "(no id)") is not one rule '\(name)' allows")
            }
        }
        if requiresExternalTxId, transaction.externalTxId?.isEmpty ?? true {
            return deny("externalTxId", "rule '\(name)' requires an externalTxId (Fireblocks' idempotency for transactions)")
        }
        if let note, !note.allows(transaction.note) {
            return deny("note", transaction.note == nil ? "rule '\(name)' requires a note" : "the note does not match rule '\(name)''s pattern")
        }
        if let hours, !hours.contains(where: { $0.contains(secondsSince1970: seconds) }) {
            return deny("hours", "rule '\(name)' allows transactions only within its UTC hours")
        }
        let reservation = window.map { WindowReservation(client: client, rule: name, assetId: transaction.assetId ?? "", amount: amount, window: $0) }
        return Verdict(allowed: true, client: client, rule: name, check: "allowed", reason: "rule '\(name)' allows it",
                       facts: facts, reservation: reservation)
    }
}

/// Why a transaction body cannot be evaluated (with what could be read of it).
struct UnreadableBody: Error {
    let reason: String
    let facts: TransactionFacts?
}

/// The fields of Fireblocks' `TransactionRequest` the policy reads, each checked for its shape.
struct TransactionBody {
    var operation: String?
    var assetId: String?
    var amount: ExactDecimal?
    var sourceType: String?
    var sourceId: String?
    var destinationType: String?
    var destinationId: String?
    var externalTxId: String?
    var note: String?
    var facts = TransactionFacts()

    /// Every field of `TransactionRequest` (Fireblocks' API): a body with another is not evaluated.
    static let knownFields: Set<String> = [
        "operation", "note", "externalTxId", "feeCurrency", "assetId", "source", "destination", "destinations", "amount",
        "treatAsGrossAmount", "forceSweep", "feeLevel", "fee", "priorityFee", "failOnLowFee", "maxFee", "maxTotalFee", "gasLimit",
        "gasPrice", "networkFee", "replaceTxByHash", "extraParameters", "utxoSelectionParams", "customerRefId", "travelRuleMessage",
        "travelRuleMessageId", "autoStaking", "networkStaking", "cpuStaking", "useGasless", "configurations",
    ]
    /// JSON's whitespace (RFC 8259).
    static let whitespace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
    /// The fields of a `TransferPeerPath` (source or destination).
    static let peerFields: Set<String> = ["type", "subType", "id", "name", "walletId", "oneTimeAddress", "isCollateral"]

    init(_ body: [UInt8]) throws(UnreadableBody) {
        guard !body.isEmpty else { throw UnreadableBody(reason: "the body is empty", facts: nil) }
        // UTF-8 JSON text, an object: JSONSerialization would also read UTF-16 and UTF-32
        // (told by NUL bytes, which UTF-8 JSON never holds raw) and a byte-order mark, where the
        // scan for duplicate names below reads UTF-8.
        guard body.first(where: { !Self.whitespace.contains($0) }) == UInt8(ascii: "{"), !body.contains(0) else {
            throw UnreadableBody(reason: "the body is not a JSON object", facts: nil)
        }
        // The whole text is parsed and checked (every value, escape and number, not only the
        // members read: the proxy forwards all of it), then the members the rules read are
        // taken from it.
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw UnreadableBody(reason: "the body is not a JSON object", facts: nil)
        }
        let read = BodyMembers(object)
        // A parser keeps one of two members with one name (JSONSerialization the last), a
        // server may keep the other: a body that says two things is not evaluated.
        if let name = JSONMembers.firstDuplicate(in: body) {
            throw UnreadableBody(reason: "the field '\(name.prefix(64))' is given twice in one object", facts: nil)
        }
        // What can be read goes into the facts first, so that a denial records it.
        // Bounded: they go into the 403, the proxy's log and an audit record (a line over
        // 1 MiB would not be a record), and a client chooses them.
        facts.operation = read.operation.string.map(shown)
        facts.assetId = read.assetId.string.map(shown)
        facts.amount = read.amount.string.map(shown)
        facts.externalTxId = read.externalTxId.string.map(shown)
        if case .object(let source) = read.source {
            facts.sourceType = source.type.string.map(shown)
            facts.sourceId = source.id.string.map(shown)
        }
        if case .object(let destination) = read.destination {
            facts.destinationType = destination.type.string.map(shown)
            facts.destinationId = destination.id.string.map(shown)
        }
        let facts = self.facts
        func fail(_ reason: String) -> UnreadableBody { UnreadableBody(reason: reason, facts: facts) }

        if let unknown = read.names.sorted().first(where: { !Self.knownFields.contains($0) }) {
            throw fail("field '\(unknown.prefix(64))' is not one of Fireblocks' TransactionRequest the policy knows")
        }
        guard read.destinations == .absent || read.destinations == .null else {
            throw fail("a transaction to several destinations ('destinations') is not evaluated: send one per destination")
        }
        func string(_ value: BodyMembers.Value, _ name: String) throws(UnreadableBody) -> String? {
            switch value {
            case .absent, .null: return nil
            case .string(let text): return text
            case .number, .other: throw fail("\(name) is not a string")
            }
        }
        operation = try string(read.operation, "operation")
        assetId = try string(read.assetId, "assetId")
        externalTxId = try string(read.externalTxId, "externalTxId")
        note = try string(read.note, "note")
        switch read.amount {
        case .absent, .null: break
        case .number: throw fail("amount is a JSON number or boolean: amounts are compared exactly, so send it as a decimal string (\"0.5\")")
        case .other: throw fail("amount is not a string")
        case .string(let text):
            guard let parsed = ExactDecimal(text) else {
                throw fail("amount '\(text.prefix(80))' is not a decimal amount")
            }
            amount = parsed
        }
        for (key, value, isDestination) in [("source", read.source, false), ("destination", read.destination, true)] {
            let peer: BodyMembers.Peer
            switch value {
            case .absent, .null: continue
            case .notAnObject: throw fail("\(key) is not an object")
            case .object(let object): peer = object
            }
            if let unknown = peer.names.sorted().first(where: { !Self.peerFields.contains($0) }) {
                throw fail("\(key).\(unknown.prefix(64)) is not a field of a TransferPeerPath")
            }
            let type = try string(peer.type, "\(key).type")
            let id = try string(peer.id, "\(key).id")
            guard let type else { throw fail("\(key) has no type") }
            guard transferPeerPathTypes.contains(type) else { throw fail("\(key).type '\(type.prefix(64))' is not a TransferPeerPathType") }
            if peer.hasOneTimeAddress, type != "ONE_TIME_ADDRESS" {
                throw fail("\(key) has a oneTimeAddress but its type is \(type)")
            }
            if isDestination {
                destinationType = type
                destinationId = id
            } else {
                sourceType = type
                sourceId = id
            }
        }
    }
}

/// What the policy reads of a transaction body, as JSONSerialization parsed it: the top-level
/// object's member names, and each member the rules read, as what it is.
struct BodyMembers {
    /// A member the rules read as a string.
    enum Value: Equatable {
        case absent, null, string(String), number, other
    }
    /// `source` or `destination` (a `TransferPeerPath`).
    struct Peer {
        var names: [String]
        var type: Value
        var id: Value
        var hasOneTimeAddress: Bool
    }
    enum PeerValue {
        case absent, null, notAnObject, object(Peer)
    }

    var names: [String]
    var operation: Value, assetId: Value, amount: Value, externalTxId: Value, note: Value, destinations: Value
    var source: PeerValue, destination: PeerValue

    init(_ object: [String: Any]) {
        names = Array(object.keys)
        operation = Self.value(object["operation"])
        assetId = Self.value(object["assetId"])
        amount = Self.value(object["amount"])
        externalTxId = Self.value(object["externalTxId"])
        note = Self.value(object["note"])
        destinations = Self.value(object["destinations"])
        source = Self.peer(object["source"])
        destination = Self.peer(object["destination"])
    }

    static func value(_ member: Any?) -> Value {
        switch member {
        case nil: return .absent
        case is NSNull: return .null
        case let text as String: return .string(text)
        // true and false are NSNumbers too.
        case is NSNumber: return .number
        default: return .other
        }
    }

    static func peer(_ member: Any?) -> PeerValue {
        switch member {
        case nil: return .absent
        case is NSNull: return .null
        case let peer as [String: Any]:
            let oneTimeAddress = peer["oneTimeAddress"]
            return .object(Peer(names: Array(peer.keys), type: value(peer["type"]), id: value(peer["id"]),
                                hasOneTimeAddress: oneTimeAddress != nil && !(oneTimeAddress is NSNull)))
        default: return .notAnObject
        }
    }
}

extension BodyMembers.Value {
    /// The text of a string member, for the facts.
    var string: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}

/// The member names of each object of a UTF-8 JSON text that JSONSerialization has already
/// accepted (so every escape is whole and every string closed), to find a name given twice in
/// one object (which a parser silently reads one way). Names with escapes are unescaped by
/// JSONDecoder itself.
enum JSONMembers {
    static func firstDuplicate(in text: [UInt8]) -> String? {
        // One frame per open object or array: the names seen (objects only).
        var frames: [Set<String>?] = []
        var expectingName = false
        var index = 0
        while index < text.count {
            let byte = text[index]
            switch byte {
            case UInt8(ascii: "{"):
                frames.append([])
                expectingName = true
            case UInt8(ascii: "["):
                frames.append(nil)
                expectingName = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = frames.popLast()
                expectingName = false
            case UInt8(ascii: ","):
                expectingName = frames.last.map { $0 != nil } ?? false
            case UInt8(ascii: "\""):
                let start = index
                var escaped = false
                index += 1
                while index < text.count {
                    if text[index] == UInt8(ascii: "\\") { escaped = true; index += 2; continue }
                    if text[index] == UInt8(ascii: "\"") { break }
                    index += 1
                }
                if expectingName, let last = frames.indices.last, var names = frames[last] {
                    let raw = Array(text[start...min(index, text.count - 1)])
                    let name = escaped ? ((try? JSONDecoder().decode(String.self, from: Data(raw))) ?? "") : String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
                    if !names.insert(name).inserted { return name }
                    frames[last] = names
                    expectingName = false
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }
}

/// A value the request chose, as a message or a record shows it: whole up to 64 characters,
/// else its first 64 and its length.
func shown(_ text: String) -> String {
    text.count <= 64 ? text : "\(text.prefix(64))… (\(text.utf8.count) bytes)"
}
