import FireblocksAPI
import Foundation

// The vault and transaction routes an SDK's smoke test calls: `GET /v1/vault/accounts_paged`,
// `POST /v1/transactions`, `GET /v1/transactions/{id}`. Shapes follow the official Python SDK
// 35.1.0 models (VaultAccountsPagedResponse, VaultAccount, VaultAsset, CreateTransactionResponse,
// TransactionResponse, AmountInfo); amounts are decimal strings there, and numbers only in the
// deprecated fields.

extension SandboxState {
    /// A vault account the stand-in lists (`VaultAccount`).
    public struct VaultAccount: Codable, Equatable, Sendable {
        /// The id (Fireblocks numbers them from "0").
        public let id: String
        /// The name.
        public let name: String
        /// `hiddenOnUI`.
        public let hiddenOnUI: Bool
        /// `autoFuel`.
        public let autoFuel: Bool
        /// Its assets.
        public let assets: [VaultAsset]
    }

    /// One asset wallet of a vault account (`VaultAsset`); balances are decimal strings.
    public struct VaultAsset: Codable, Equatable, Sendable {
        /// The asset id (`BTC_TEST`).
        public let id: String
        /// `total`.
        public let total: String
        /// `available`.
        public let available: String
        /// `pending`.
        public let pending: String
        /// `lockedAmount`.
        public let lockedAmount: String
    }

    /// A transfer peer (`{type, id}`), as sent and as answered.
    public struct Peer: Codable, Equatable, Sendable {
        /// `VAULT_ACCOUNT`, `EXTERNAL_WALLET`, …
        public let type: String
        /// The peer's id (nil for a one-time address).
        public let id: String?
        /// A one-time address, when the type is `ONE_TIME_ADDRESS`.
        public let address: String?
    }

    /// A transaction created through `POST /v1/transactions`.
    public struct Transaction: Codable, Equatable, Sendable {
        /// The id.
        public let id: String
        /// The caller's `externalTxId`.
        public let externalTxId: String?
        /// `TRANSFER`, …
        public let operation: String
        /// The asset.
        public let assetId: String
        /// The amount as an exact decimal string.
        public let amount: String
        /// Where from.
        public let source: Peer
        /// Where to (one destination).
        public let destination: Peer?
        /// Where to (several), with their amounts.
        public let destinations: [Destination]?
        /// The note.
        public let note: String?
        /// The API key that created it.
        public let createdBy: String
        /// When it was made.
        public let createdAt: Date
        /// Its status now (moved on by ``SandboxState/advanceTransactions(now:step:)``).
        public var status: String
        /// When the status last changed.
        public var lastUpdated: Date
    }

    /// One of several destinations.
    public struct Destination: Codable, Equatable, Sendable {
        /// The amount to it, an exact decimal string.
        public let amount: String
        /// The peer.
        public let destination: Peer
    }

    /// The statuses a transfer passes through in the stand-in, one ``SandboxConfiguration/transactionStep``
    /// apart (Fireblocks' primary transaction statuses, in their documented order).
    public static let transactionStatuses = ["SUBMITTED", "PENDING_AUTHORIZATION", "QUEUED", "PENDING_SIGNATURE",
                                             "BROADCASTING", "CONFIRMING", "COMPLETED"]

    /// The vault accounts a new workspace has: one funded testnet vault, one empty.
    public static let defaultVaultAccounts = [
        VaultAccount(id: "0", name: "Default", hiddenOnUI: false, autoFuel: false, assets: [
            VaultAsset(id: "BTC_TEST", total: "1.5", available: "1.5", pending: "0", lockedAmount: "0"),
            VaultAsset(id: "ETH_TEST5", total: "10", available: "10", pending: "0", lockedAmount: "0"),
        ]),
        VaultAccount(id: "1", name: "Treasury", hiddenOnUI: false, autoFuel: true, assets: []),
    ]

    /// The vault accounts (a state file without them has the defaults).
    public var vaults: [VaultAccount] { vaultAccounts ?? Self.defaultVaultAccounts }

    /// Moves every transaction on to where it is at `now`: one status per `step` seconds after
    /// its creation, until COMPLETED. Returns whether anything changed.
    @discardableResult
    public mutating func advanceTransactions(now: Date, step: TimeInterval) -> Bool {
        guard var list = transactions else { return false }
        var changed = false
        let last = Self.transactionStatuses.count - 1
        for index in list.indices {
            let elapsed = now.timeIntervalSince(list[index].createdAt)
            // Clamped before it becomes an Int: a tiny step or a far-off creation time (a state
            // file from elsewhere) must not trap.
            let steps = step <= 0 ? Double(last) : (elapsed / step).rounded(.down)
            let reached = steps.isFinite ? Int(min(Double(last), max(0, steps))) : last
            let current = Self.transactionStatuses.firstIndex(of: list[index].status) ?? last
            if reached > current {
                list[index].status = Self.transactionStatuses[reached]
                list[index].lastUpdated = list[index].createdAt.addingTimeInterval(step * Double(reached))
                changed = true
            }
        }
        if changed { transactions = list }
        return changed
    }
}

extension APIUserRole {
    /// Whether an API user of this role may create a transaction in the stand-in. Fireblocks
    /// documents that a Viewer (and the auditors) only read; the approver approves what others
    /// initiate.
    var mayCreateTransactions: Bool {
        switch self {
        case .OWNER, .ADMIN, .NON_SIGNING_ADMIN, .SIGNER, .COLLATERALS_SIGNER, .EDITOR, .NCW_ADMIN, .NCW_SIGNER: true
        default: false
        }
    }
}

extension SandboxService {
    // MARK: Vault accounts

    func vaultAccountsPaged(_ request: SandboxRequest, state: SandboxState, requestID: String, now: Date) -> SandboxReply {
        var query: [String: String] = [:]
        if let rawQuery = request.target.split(separator: "?", maxSplits: 1).dropFirst().first {
            for pair in rawQuery.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
                guard let name = parts.first, !name.isEmpty else { continue }   // `?=`, `?&=x`: nothing to read
                query[name] = parts.count > 1 ? parts[1] : ""
            }
        }
        var accounts = state.vaults
        if let prefix = query["namePrefix"], !prefix.isEmpty { accounts = accounts.filter { $0.name.hasPrefix(prefix) } }
        if let suffix = query["nameSuffix"], !suffix.isEmpty { accounts = accounts.filter { $0.name.hasSuffix(suffix) } }
        var limit = 200
        if let text = query["limit"] {
            guard let value = Int(text), (1...500).contains(value) else {
                return Self.errorResponse(400, "VALIDATION", "limit must be 1 to 500", requestID: requestID, now: now)
            }
            limit = value
        }
        // Cursors are the ids of the accounts a page ends at.
        var start = 0
        if let after = query["after"], !after.isEmpty {
            guard let index = accounts.firstIndex(where: { $0.id == after }) else {
                return Self.errorResponse(400, "VALIDATION", "after is not a cursor of this listing", requestID: requestID, now: now)
            }
            start = index + 1
        } else if let before = query["before"], !before.isEmpty {
            guard let index = accounts.firstIndex(where: { $0.id == before }) else {
                return Self.errorResponse(400, "VALIDATION", "before is not a cursor of this listing", requestID: requestID, now: now)
            }
            start = max(0, index - limit)
            accounts = Array(accounts[..<index])
        }
        let page = Array(accounts.dropFirst(start).prefix(limit))
        var paging: [String: Any] = [:]
        if start > 0, let first = page.first { paging["before"] = first.id }
        if start + page.count < accounts.count, let last = page.last { paging["after"] = last.id }
        let listed: [[String: Any]] = page.map { account in
            ["id": account.id, "name": account.name, "hiddenOnUI": account.hiddenOnUI, "autoFuel": account.autoFuel,
             "assets": account.assets.map { asset in
                 ["id": asset.id, "total": asset.total, "balance": asset.total, "available": asset.available,
                  "pending": asset.pending, "frozen": "0", "lockedAmount": asset.lockedAmount, "staked": "0"]
             }]
        }
        return Self.json(200, ["accounts": listed, "paging": paging], requestID: requestID, now: now)
    }

    // MARK: Transactions

    func createTransaction(_ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                           requestID: String, now: Date) -> SandboxReply {
        guard caller.role.mayCreateTransactions else {
            return Self.errorResponse(403, "AUTHORIZATION", "Role \(caller.role.rawValue) may not create transactions", requestID: requestID, now: now)
        }
        let bodyHash = RequestClaims.bodyHash(request.body)
        let idempotencyKey = request.headers["idempotency-key"]
        let scopedKey = idempotencyKey.map { "POST /v1/transactions " + $0 }
        if let scopedKey, let earlier = state.idempotency.first(where: { $0.key == scopedKey && $0.apiKey == caller.apiKey }) {
            guard earlier.bodySHA256 == bodyHash else {
                return Self.errorResponse(400, "VALIDATION", "Idempotency-Key was already used with a different request body",
                                          requestID: requestID, now: now)
            }
            return .respond(status: earlier.status, headers: Self.baseHeaders(requestID: earlier.requestID, now: now)
                                + [("Content-Type", "application/json"), ("Idempotent-Replay", "true")],
                            body: Array(earlier.body.utf8))
        }
        let transaction: SandboxState.Transaction
        switch Self.parseTransaction(request.body, state: state, caller: caller, now: now) {
        case .failure(let message):
            return Self.errorResponse(400, "VALIDATION", message, requestID: requestID, now: now)
        case .success(let parsed):
            transaction = parsed
        }
        // Fireblocks refuses a second transaction with the same externalTxId.
        if let external = transaction.externalTxId, (state.transactions ?? []).contains(where: { $0.externalTxId == external }) {
            return Self.errorResponse(400, "VALIDATION", "A transaction with this externalTxId already exists", requestID: requestID, now: now)
        }
        // At the bound, the oldest completed transactions make room; none completed: wait.
        var transactions = state.transactions ?? []
        while transactions.count >= configuration.limits.transactions {
            guard let finished = transactions.firstIndex(where: { $0.status == SandboxState.transactionStatuses.last }) else {
                let step = max(1, Int(min(configuration.transactionStep, 3600).rounded(.up)))
                return Self.errorResponse(429, "RATE_LIMIT", "Too many transactions in flight: the stand-in keeps at most \(configuration.limits.transactions), and none has completed yet",
                                          requestID: requestID, now: now, extraHeaders: [("Retry-After", "\(step)")])
            }
            transactions.remove(at: finished)
        }
        state.transactions = transactions + [transaction]
        let answer: [String: Any] = ["id": transaction.id, "status": transaction.status, "systemMessages": [Any]()]
        let reply = Self.json(200, answer, requestID: requestID, now: now)
        if let scopedKey, case .respond(_, _, let body) = reply {
            state.remember(SandboxState.IdempotentAnswer(
                key: scopedKey, apiKey: caller.apiKey, bodySHA256: bodyHash, status: 200,
                body: String(decoding: body, as: UTF8.self), requestID: requestID, createdAt: now),
                limit: configuration.limits.idempotencyAnswers, now: now)
        }
        return reply
    }

    func transaction(id: String, state: SandboxState, requestID: String, now: Date) -> SandboxReply {
        guard let transaction = state.transactions?.first(where: { $0.id == id }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No transaction \(id)", requestID: requestID, now: now)
        }
        return Self.json(200, Self.transactionResponse(transaction, vaults: state.vaults), requestID: requestID, now: now)
    }

    static func transactionResponse(_ transaction: SandboxState.Transaction, vaults: [SandboxState.VaultAccount]) -> [String: Any] {
        func peer(_ peer: SandboxState.Peer) -> [String: Any] {
            var object: [String: Any] = ["type": peer.type]
            if let id = peer.id { object["id"] = id }
            if peer.type == "VAULT_ACCOUNT", let vault = vaults.first(where: { $0.id == peer.id }) { object["name"] = vault.name }
            return object
        }
        let milliseconds = { (date: Date) in Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
        let number = Double(transaction.amount) ?? 0
        let onChain = ["CONFIRMING", "COMPLETED"].contains(transaction.status)
        var object: [String: Any] = [
            "id": transaction.id, "status": transaction.status, "subStatus": transaction.status == "COMPLETED" ? "CONFIRMED" : "",
            "operation": transaction.operation, "assetId": transaction.assetId, "source": peer(transaction.source),
            "amountInfo": ["amount": transaction.amount, "requestedAmount": transaction.amount, "netAmount": transaction.amount],
            "amount": number, "requestedAmount": number, "netAmount": number,
            "createdAt": milliseconds(transaction.createdAt), "lastUpdated": milliseconds(transaction.lastUpdated),
            "createdBy": transaction.createdBy, "signedBy": [String](), "rejectedBy": "",
            "numOfConfirmations": transaction.status == "COMPLETED" ? 6 : 0,
        ]
        if let external = transaction.externalTxId { object["externalTxId"] = external }
        if let note = transaction.note { object["note"] = note }
        if let destination = transaction.destination {
            object["destination"] = peer(destination)
            if let address = destination.address { object["destinationAddress"] = address }
        }
        if let destinations = transaction.destinations {
            object["destinations"] = destinations.map { ["amount": $0.amount, "destination": peer($0.destination)] as [String: Any] }
        }
        if onChain { object["txHash"] = sha256Hex(Array(transaction.id.utf8)) }
        return object
    }

    private enum ParsedTransaction {
        case success(SandboxState.Transaction)
        case failure(String)
    }

    private static func parseTransaction(_ body: [UInt8], state: SandboxState, caller: TrustedAPIUser, now: Date) -> ParsedTransaction {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return .failure("Body must be a JSON object (TransactionRequest)")
        }
        let operation = object["operation"] as? String ?? "TRANSFER"
        guard operation == "TRANSFER" else { return .failure("the stand-in carries out TRANSFER operations only, not \(operation)") }
        guard let assetId = object["assetId"] as? String, !assetId.isEmpty else { return .failure("assetId is required") }
        if let note = object["note"], !(note is String) { return .failure("note must be a string") }
        if let external = object["externalTxId"], !(external is String) { return .failure("externalTxId must be a string") }

        // Amounts are read again by JSONDecoder: a number keeps its exact decimal text, a boolean is no number.
        let amounts = (try? JSONDecoder().decode(AmountFields.self, from: Data(body))) ?? AmountFields(amount: nil, destinations: nil)
        func decimal(_ value: AmountValue?, field: String) -> Result<String, Refusal> {
            let text: String
            switch value {
            case .text(let raw)?: text = raw
            case .number(let number)?: text = number.description
            case nil: return .failure(Refusal("\(field) is required (a decimal string or a number)"))
            }
            guard let amount = DecimalText(text) else { return .failure(Refusal("\(field) must be a positive decimal number")) }
            return .success(amount.text)
        }
        func peer(_ value: Any?, field: String) -> Result<SandboxState.Peer, Refusal> {
            guard let object = value as? [String: Any] else { return .failure(Refusal("\(field) must be a TransferPeerPath object")) }
            let type = object["type"] as? String ?? "VAULT_ACCOUNT"
            guard Self.peerTypes.contains(type) else {
                return .failure(Refusal("\(field).type must be one of \(Self.peerTypes.joined(separator: ", "))"))
            }
            if type == "ONE_TIME_ADDRESS" {
                guard let oneTime = object["oneTimeAddress"] as? [String: Any], let address = oneTime["address"] as? String, !address.isEmpty else {
                    return .failure(Refusal("\(field).oneTimeAddress.address is required for ONE_TIME_ADDRESS"))
                }
                return .success(SandboxState.Peer(type: type, id: nil, address: address))
            }
            guard let id = object["id"] as? String, !id.isEmpty else { return .failure(Refusal("\(field).id is required")) }
            if type == "VAULT_ACCOUNT", !state.vaults.contains(where: { $0.id == id }) {
                return .failure(Refusal("\(field): no vault account \(id)"))
            }
            return .success(SandboxState.Peer(type: type, id: id, address: nil))
        }

        let source: SandboxState.Peer
        switch peer(object["source"] ?? ["type": "VAULT_ACCOUNT", "id": "0"], field: "source") {
        case .failure(let refusal): return .failure(refusal.message)
        case .success(let value): source = value
        }
        if source.type == "VAULT_ACCOUNT", let vault = state.vaults.first(where: { $0.id == source.id }),
           !vault.assets.contains(where: { $0.id == assetId }) {
            return .failure("vault account \(vault.id) has no \(assetId) wallet")
        }
        var amount = "0"
        var destination: SandboxState.Peer?
        var destinations: [SandboxState.Destination]?
        switch (object["destination"], object["destinations"]) {
        case (.some, .some):
            return .failure("give destination or destinations, not both")
        case (let single?, nil):
            switch peer(single, field: "destination") {
            case .failure(let refusal): return .failure(refusal.message)
            case .success(let value): destination = value
            }
            switch decimal(amounts.amount, field: "amount") {
            case .failure(let refusal): return .failure(refusal.message)
            case .success(let value): amount = value
            }
        case (nil, let several?):
            guard let list = several as? [[String: Any]], !list.isEmpty else { return .failure("destinations must be a non-empty array") }
            var parsed: [SandboxState.Destination] = []
            for (index, item) in list.enumerated() {
                let to: SandboxState.Peer
                switch peer(item["destination"], field: "destinations[\(index)].destination") {
                case .failure(let refusal): return .failure(refusal.message)
                case .success(let value): to = value
                }
                switch decimal(amounts.destinations?[safe: index]?.amount, field: "destinations[\(index)].amount") {
                case .failure(let refusal): return .failure(refusal.message)
                case .success(let value): parsed.append(SandboxState.Destination(amount: value, destination: to))
                }
            }
            destinations = parsed
            switch decimal(amounts.amount ?? parsed.first.map { .text($0.amount) }, field: "amount") {
            case .failure(let refusal): return .failure(refusal.message)
            case .success(let value): amount = value
            }
        case (nil, nil):
            return .failure("destination (or destinations) is required")
        }
        return .success(SandboxState.Transaction(
            id: UUID().uuidString.lowercased(), externalTxId: object["externalTxId"] as? String, operation: operation,
            assetId: assetId, amount: amount, source: source, destination: destination, destinations: destinations,
            note: object["note"] as? String, createdBy: caller.apiKey, createdAt: now,
            status: SandboxState.transactionStatuses[0], lastUpdated: now))
    }

    private enum AmountValue: Decodable {
        case text(String)
        case number(Decimal)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else {
                self = .number(try container.decode(Decimal.self))
            }
        }
    }

    private struct AmountFields: Decodable {
        struct Item: Decodable { let amount: AmountValue? }
        let amount: AmountValue?
        let destinations: [Item]?
    }

    private struct Refusal: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static let peerTypes = ["VAULT_ACCOUNT", "EXCHANGE_ACCOUNT", "INTERNAL_WALLET", "EXTERNAL_WALLET", "CONTRACT",
                            "FIAT_ACCOUNT", "NETWORK_CONNECTION", "ONE_TIME_ADDRESS", "END_USER_WALLET"]
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

/// A positive decimal amount, kept as its exact text (`0.1` stays `0.1`; no binary floating point).
struct DecimalText {
    let text: String

    init?(_ raw: String) {
        let parts = raw.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              raw.count <= 64 else { return nil }
        guard raw.contains(where: { $0 != "0" && $0 != "." }) else { return nil }
        text = raw
    }
}
