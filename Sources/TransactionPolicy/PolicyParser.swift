import ProxySettings
import Yams

extension Policy {
    /// The largest policy text read (1 MiB): a policy is a few pages.
    public static let maximumTextSize = 1 << 20

    /// Parses a policy's YAML text (docs/policy.md). Every error names the line: a syntax error,
    /// a key the language does not have, a missing key, a value of the wrong kind (an amount that
    /// is negative or not a quoted decimal string, an unknown destination type, …).
    public init(yaml text: String) throws(PolicyError) {
        guard text.utf8.count <= Policy.maximumTextSize else {
            throw PolicyError(.invalidValue, "the policy is larger than \(Policy.maximumTextSize) bytes")
        }
        let root: Node?
        do {
            var documents = try compose_all(yaml: text)
            root = documents.next()
            if let error = documents.error { throw error }
            if root != nil, let extra = documents.next() {
                throw PolicyError(.syntax, "the policy is one YAML document; another starts here", line: extra.mark?.line)
            }
            if let error = documents.error { throw error }
        } catch let error as PolicyError {
            throw error
        } catch let error as YamlError {
            throw PolicyError.syntax(error)
        } catch {
            throw PolicyError(.syntax, "not YAML: \(error)")
        }
        guard let root else { throw PolicyError(.missingKey, "the policy is empty: it needs 'version: 1' and clients", line: 1) }
        self = try PolicyReader().policy(root)
    }
}

extension PolicyError {
    /// A YAML error from the parser, at its line.
    static func syntax(_ error: YamlError) -> PolicyError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let what = context.map { "\($0.text) (line \($0.mark.line)): " } ?? ""
            return PolicyError(.syntax, "not YAML: \(what)\(problem)", line: mark.line, column: mark.column)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PolicyError(.duplicateKey, "'\(duplicates.joined(separator: "', '"))' given twice in one mapping",
                               line: context.mark.line, column: context.mark.column)
        case .reader(let problem, _, _, _):
            return PolicyError(.syntax, "not readable as UTF-8 YAML: \(problem)")
        default:
            return PolicyError(.syntax, "not YAML: \(error)")
        }
    }
}

/// The destination types of Fireblocks' `TransferPeerPathType`.
public let transferPeerPathTypes: Set<String> = [
    "VAULT_ACCOUNT", "EXCHANGE_ACCOUNT", "CONNECTED_ACCOUNT", "INTERNAL_WALLET", "EXTERNAL_WALLET", "CONTRACT",
    "NETWORK_CONNECTION", "FIAT_ACCOUNT", "COMPOUND", "GAS_STATION", "ONE_TIME_ADDRESS", "UNKNOWN", "END_USER_WALLET",
    "PROGRAM_CALL", "MULTI_DESTINATION", "OEC_PARTNER", "WALLET_POOL",
]

/// The operations of Fireblocks' `TransactionOperation`.
public let transactionOperations: Set<String> = [
    "TRANSFER", "BURN", "CONTRACT_CALL", "PROGRAM_CALL", "MINT", "RAW", "TYPED_MESSAGE", "APPROVE", "ENABLE_ASSET",
]

/// Reads the node tree Yams composed into a ``Policy``, refusing what the language lacks.
struct PolicyReader {
    func policy(_ root: Node) throws(PolicyError) -> Policy {
        let fields = try mapping(root, what: "the policy", keys: ["version", "default", "clients"], required: ["version"])
        let version = try scalar(fields["version"]!, what: "version")
        guard version.string == "1", version.style == .plain else {
            throw PolicyError(.invalidValue, "version is 1 (the only version of the language), not '\(version.string)'",
                              line: line(fields["version"]))
        }
        guard fields["default"] != nil || fields["clients"] != nil else {
            throw PolicyError(.missingKey, "the policy names no client: give 'clients' or 'default'", line: line(root))
        }
        var clients: [String: ClientPolicy] = [:]
        if let node = fields["clients"] {
            for (key, value) in try entries(node, what: "clients") {
                let name = try identifier(key, what: "a client's name")
                guard name != Policy.defaultClientName else {
                    throw PolicyError(.invalidValue, "'default' is the top-level key for requests without a client token, not a client's name",
                                      line: line(key))
                }
                clients[name] = try client(value, name: name, line: line(key))
            }
        }
        let defaultClient = try fields["default"].map { node throws(PolicyError) in try client(node, name: Policy.defaultClientName, line: line(node)) }
        return Policy(clients: clients, defaultClient: defaultClient)
    }

    func client(_ node: Node, name: String, line declared: Int?) throws(PolicyError) -> ClientPolicy {
        let fields = try mapping(node, what: "client '\(name)'", keys: ["routes", "transactions"], required: ["routes"])
        var routes: [AllowRule] = []
        for item in try sequence(fields["routes"]!, what: "routes") {
            let text = try scalar(item, what: "a route").string
            do {
                routes.append(try AllowRule(parsing: text))
            } catch {
                throw PolicyError(.invalidValue, "route: \(error.reason)", line: line(item))
            }
        }
        var rules: [TransactionRule]?
        if let node = fields["transactions"] {
            var read: [TransactionRule] = []
            for item in try sequence(node, what: "transactions") {
                let rule = try transactionRule(item)
                if read.contains(where: { $0.name == rule.name }) {
                    throw PolicyError(.duplicateKey, "client '\(name)' has two transaction rules named '\(rule.name)'", line: line(item))
                }
                read.append(rule)
            }
            rules = read
        }
        return ClientPolicy(name: name, routes: routes, transactions: rules, line: declared)
    }

    func transactionRule(_ node: Node) throws(PolicyError) -> TransactionRule {
        let fields = try mapping(node, what: "a transaction rule",
                                 keys: ["name", "assets", "operations", "maxAmount", "window", "sourceVaultAccounts", "destinationTypes",
                                        "destinationIds", "externalTxId", "note", "hoursUTC"],
                                 required: ["name", "assets"])
        let name = try identifier(fields["name"]!, what: "a rule's name")
        let assets = try stringSet(fields["assets"]!, what: "assets")
        var operations: Set<String> = ["TRANSFER"]
        if let node = fields["operations"] {
            operations = try stringSet(node, what: "operations")
            for operation in operations where !transactionOperations.contains(operation) {
                throw PolicyError(.invalidValue, "'\(operation)' is not an operation of Fireblocks' TransactionOperation "
                                  + "(\(transactionOperations.sorted().joined(separator: ", ")))", line: line(node))
            }
        }
        let maximumAmount = try fields["maxAmount"].map { node throws(PolicyError) in try amount(node, what: "maxAmount") }
        var window: RollingWindow?
        if let node = fields["window"] {
            let windowFields = try mapping(node, what: "window", keys: ["period", "maxTotal"], required: ["period", "maxTotal"])
            window = RollingWindow(seconds: try duration(windowFields["period"]!),
                                   maximumTotal: try amount(windowFields["maxTotal"]!, what: "maxTotal"))
        }
        let sources = try fields["sourceVaultAccounts"].map { node throws(PolicyError) in try stringSet(node, what: "sourceVaultAccounts") }
        var destinationTypes: Set<String>?
        if let node = fields["destinationTypes"] {
            let types = try stringSet(node, what: "destinationTypes")
            for type in types where !transferPeerPathTypes.contains(type) {
                throw PolicyError(.invalidValue, "'\(type)' is not a destination type of Fireblocks' TransferPeerPathType "
                                  + "(e.g. VAULT_ACCOUNT, EXTERNAL_WALLET, INTERNAL_WALLET, ONE_TIME_ADDRESS)", line: line(node))
            }
            destinationTypes = types
        }
        let destinationIds = try fields["destinationIds"].map { node throws(PolicyError) in try stringSet(node, what: "destinationIds") }
        var requiresExternalTxId = false
        if let node = fields["externalTxId"] {
            let value = try scalar(node, what: "externalTxId")
            guard value.string == "required" || value.string == "optional" else {
                throw PolicyError(.invalidValue, "externalTxId is 'required' or 'optional', not '\(value.string)'", line: line(node))
            }
            requiresExternalTxId = value.string == "required"
        }
        var note: NoteRule?
        if let node = fields["note"] {
            let noteFields = try mapping(node, what: "note", keys: ["required", "pattern"], required: [])
            let required = try noteFields["required"].map { node throws(PolicyError) in try boolean(node, what: "note.required") } ?? false
            let pattern = try noteFields["pattern"].map { node throws(PolicyError) in try scalar(node, what: "note.pattern").string }
            do {
                note = try NoteRule(required: required, pattern: pattern)
            } catch {
                throw PolicyError(.invalidValue, "note.pattern is not a regular expression without capture groups "
                                  + "(use (?:…) to group): \(error)", line: line(noteFields["pattern"]))
            }
        }
        var hours: [TimeWindow]?
        if let node = fields["hoursUTC"] {
            var windows: [TimeWindow] = []
            for item in try sequence(node, what: "hoursUTC") { windows.append(try timeWindow(item)) }
            guard !windows.isEmpty else {
                throw PolicyError(.invalidValue, "hoursUTC lists no time: leave it out to allow any time", line: line(node))
            }
            hours = windows
        }
        return TransactionRule(name: name, assets: assets, operations: operations, maximumAmount: maximumAmount, window: window,
                               sourceVaultAccounts: sources, destinationTypes: destinationTypes, destinationIds: destinationIds,
                               requiresExternalTxId: requiresExternalTxId, note: note, hours: hours, line: line(node))
    }

    func timeWindow(_ node: Node) throws(PolicyError) -> TimeWindow {
        let fields = try mapping(node, what: "an hoursUTC entry", keys: ["days", "from", "to"], required: ["from", "to"])
        var days = Set(0..<7)
        if let node = fields["days"] {
            days = []
            for item in try sequence(node, what: "days") {
                let name = try scalar(item, what: "a day").string.lowercased()
                guard let day = TimeWindow.dayNames.firstIndex(of: name) else {
                    throw PolicyError(.invalidValue, "'\(name)' is not a day (mon, tue, wed, thu, fri, sat, sun)", line: line(item))
                }
                days.insert(day)
            }
        }
        let from = try minuteOfDay(fields["from"]!, what: "from")
        let to = try minuteOfDay(fields["to"]!, what: "to")
        guard from < to else {
            throw PolicyError(.invalidValue, "'from' is before 'to' within one UTC day (use two entries to cross midnight)",
                              line: line(fields["to"]))
        }
        return TimeWindow(days: days, fromMinute: from, toMinute: to)
    }

    // MARK: values

    /// `HH:MM`, 00:00 to 24:00.
    func minuteOfDay(_ node: Node, what: String) throws(PolicyError) -> Int {
        let text = try scalar(node, what: what).string
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
              let hour = Int(parts[0]), let minute = Int(parts[1]), (0...24).contains(hour), (0..<60).contains(minute),
              hour * 60 + minute <= 24 * 60
        else {
            throw PolicyError(.invalidValue, "\(what) is a UTC time 'HH:MM' (00:00 to 24:00), not '\(text)'", line: line(node))
        }
        return hour * 60 + minute
    }

    /// `30s`, `15m`, `24h`, `7d`: 1 second to 366 days.
    func duration(_ node: Node) throws(PolicyError) -> Int64 {
        let text = try scalar(node, what: "period").string
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int64(text.dropLast()), count > 0,
              text.dropLast().allSatisfy(\.isASCII), count <= 366 * 86_400 / unit
        else {
            throw PolicyError(.invalidValue, "period is a count and a unit (s, m, h, d), e.g. '24h' or '7d', up to 366 days, not '\(text)'",
                              line: line(node))
        }
        return count * unit
    }

    /// An amount: a quoted decimal string (`"1000"`, `"0.5"`). An unquoted number is refused:
    /// YAML would read `0.1` as binary floating point, and amounts are compared exactly.
    func amount(_ node: Node, what: String) throws(PolicyError) -> ExactDecimal {
        let value = try scalar(node, what: what)
        let text = value.string
        guard value.style == .singleQuoted || value.style == .doubleQuoted else {
            let hint = text.hasPrefix("-") ? "negative, and " : ""
            throw PolicyError(.invalidValue, "\(what) \(text) is \(hint)a YAML number: write amounts as quoted decimal strings, "
                              + "e.g. \(what): \"\(text.hasPrefix("-") ? String(text.dropFirst()) : text)\" (exact, never floating point)",
                              line: line(node), column: node.mark?.column)
        }
        if text.hasPrefix("-") {
            throw PolicyError(.invalidValue, "\(what) \"\(text)\" is negative: amounts are at least 0", line: line(node), column: node.mark?.column)
        }
        guard let amount = ExactDecimal(text) else {
            throw PolicyError(.invalidValue, "\(what) \"\(text)\" is not a decimal amount (digits, optionally '.' and digits; "
                              + "no sign, exponent or separators)", line: line(node), column: node.mark?.column)
        }
        return amount
    }

    func boolean(_ node: Node, what: String) throws(PolicyError) -> Bool {
        let value = try scalar(node, what: what)
        guard value.style == .plain, value.string == "true" || value.string == "false" else {
            throw PolicyError(.invalidValue, "\(what) is true or false, not '\(value.string)'", line: line(node))
        }
        return value.string == "true"
    }

    /// A name: letters, digits, `-`, `_`, `.`; 1 to 64 characters.
    func identifier(_ node: Node, what: String) throws(PolicyError) -> String {
        let text = try scalar(node, what: what).string
        let allowed = text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || scalar == "-" || scalar == "_" || scalar == ".")
        }
        guard allowed, (1...64).contains(text.count) else {
            throw PolicyError(.invalidValue, "\(what) '\(text)' is 1 to 64 letters, digits, '-', '_' or '.'", line: line(node))
        }
        return text
    }

    /// A non-empty list of non-empty strings.
    func stringSet(_ node: Node, what: String) throws(PolicyError) -> Set<String> {
        var values: Set<String> = []
        for item in try sequence(node, what: what) {
            let text = try scalar(item, what: "an entry of \(what)").string
            guard !text.isEmpty else { throw PolicyError(.invalidValue, "\(what) has an empty entry", line: line(item)) }
            values.insert(text)
        }
        guard !values.isEmpty else {
            throw PolicyError(.invalidValue, "\(what) is empty: it would allow nothing (leave it out to allow any)", line: line(node))
        }
        return values
    }

    // MARK: shapes

    func line(_ node: Node?) -> Int? { node?.mark?.line }

    func scalar(_ node: Node, what: String) throws(PolicyError) -> Node.Scalar {
        guard case .scalar(let value) = node else {
            throw PolicyError(.invalidValue, "\(what) is a single value, not a \(kind(node))", line: line(node))
        }
        return value
    }

    func sequence(_ node: Node, what: String) throws(PolicyError) -> [Node] {
        guard case .sequence(let value) = node else {
            throw PolicyError(.invalidValue, "\(what) is a list, not a \(kind(node))", line: line(node))
        }
        return Array(value)
    }

    func entries(_ node: Node, what: String) throws(PolicyError) -> [(Node, Node)] {
        guard case .mapping(let value) = node else {
            throw PolicyError(.invalidValue, "\(what) is a mapping of keys to values, not a \(kind(node))", line: line(node))
        }
        var seen: Set<String> = []
        var pairs: [(Node, Node)] = []
        for (key, item) in value {
            let name = try scalar(key, what: "a key").string
            guard seen.insert(name).inserted else {
                throw PolicyError(.duplicateKey, "'\(name)' is given twice in \(what)", line: line(key))
            }
            pairs.append((key, item))
        }
        return pairs
    }

    /// A mapping with only `keys`, all of `required` among them.
    func mapping(_ node: Node, what: String, keys: Set<String>, required: Set<String>) throws(PolicyError) -> [String: Node] {
        var fields: [String: Node] = [:]
        for (key, value) in try entries(node, what: what) {
            let name = try scalar(key, what: "a key").string
            guard keys.contains(name) else {
                throw PolicyError(.unknownKey, "'\(name)' is not a key of \(what) (its keys: \(keys.sorted().joined(separator: ", ")))",
                                  line: line(key), column: key.mark?.column)
            }
            fields[name] = value
        }
        for name in required.sorted() where fields[name] == nil {
            throw PolicyError(.missingKey, "\(what) has no '\(name)'", line: line(node))
        }
        return fields
    }

    func kind(_ node: Node) -> String {
        switch node {
        case .scalar: return "single value"
        case .mapping: return "mapping"
        case .sequence: return "list"
        case .alias: return "alias"
        }
    }
}
