import Crypto
import DurableFiles
import HexEncoding
import Yams

/// What `approvals watch` does with each pending approval request (docs/approvals.md): rules in
/// order, the first whose request types and conditions on `requestData` all hold decides
/// (approve, reject with a reason, or skip: leave it for people); none: `default` (skip unless
/// said otherwise). The same YAML reading as the proxy's policy: errors name the line, unknown
/// keys are refused, amounts are exact decimals in quotes, patterns match the whole text.
public struct ApprovalPolicy: Sendable {
    /// What a rule decides.
    public enum Decision: String, Sendable, Hashable, Codable {
        case approve, reject, skip
    }

    /// One condition on a field of `requestData`.
    public struct Condition: Sendable {
        /// The field's path, dot-separated (`transfer.amount`).
        public let field: [String]
        /// The field's text (a string, or a number as written) must be one of these.
        public let oneOf: Set<String>?
        /// The field must be a decimal (a number, or a string of one) at most this.
        public let maximum: ExactDecimal?
        /// … at least this.
        public let minimum: ExactDecimal?
        /// The field's text must match this whole.
        public let pattern: NoteRule?
    }

    /// One rule.
    public struct Rule: Sendable {
        /// Its name (in records and reports).
        public let name: String
        /// The request types it covers (nil: any).
        public let requestTypes: Set<String>?
        /// Conditions that must all hold.
        public let conditions: [Condition]
        /// What it decides.
        public let decision: Decision
        /// Why (sent nowhere: kept in the audit record; required for `reject`).
        public let reason: String?
    }

    /// A value of `requestData`: numbers keep the text they were written with.
    public indirect enum Value: Sendable, Equatable {
        case null
        case bool(Bool)
        case number(String)
        case string(String)
        case array([Value])
        case object([String: Value])
    }

    /// The verdict on one request.
    public struct Verdict: Sendable, Equatable {
        /// What to do.
        public let decision: Decision
        /// The rule that decided (`default` when none matched).
        public let rule: String
        /// Why.
        public let reason: String
    }

    /// The rules, in order.
    public let rules: [Rule]
    /// What happens when no rule matches.
    public let defaultDecision: Decision

    /// Parses the YAML text of an approval policy.
    public init(yaml text: String) throws(PolicyError) {
        guard text.utf8.count <= Policy.maximumTextSize else {
            throw PolicyError(.invalidValue, "the policy is larger than \(Policy.maximumTextSize) bytes")
        }
        let root: Node?
        do {
            root = try compose(yaml: text)
        } catch let error as YamlError {
            throw PolicyError.syntax(error)
        } catch {
            throw PolicyError(.syntax, "not YAML: \(error)")
        }
        guard let root else { throw PolicyError(.missingKey, "the policy is empty: it needs 'version: 1' and rules", line: 1) }
        self = try PolicyReader().approvalPolicy(root)
    }

    init(rules: [Rule], defaultDecision: Decision) {
        self.rules = rules
        self.defaultDecision = defaultDecision
    }

    /// The verdict on a request of `requestType` with `requestData` (nil: none).
    public func evaluate(requestType: String, requestData: Value?) -> Verdict {
        for rule in rules {
            if let types = rule.requestTypes, !types.contains(requestType) { continue }
            guard rule.conditions.allSatisfy({ holds($0, in: requestData) }) else { continue }
            return Verdict(decision: rule.decision, rule: rule.name, reason: rule.reason ?? "rule '\(rule.name)'")
        }
        return Verdict(decision: defaultDecision, rule: "default", reason: "no rule matched")
    }

    private func holds(_ condition: Condition, in data: Value?) -> Bool {
        var value = data
        for key in condition.field {
            guard case .object(let fields)? = value else { return false }
            value = fields[key]
        }
        let text: String
        switch value {
        case .string(let string)?: text = string
        case .number(let number)?: text = number
        case .bool(let flag)?: text = String(flag)
        default: return false
        }
        if let oneOf = condition.oneOf, !oneOf.contains(text) { return false }
        if condition.maximum != nil || condition.minimum != nil {
            guard let amount = ExactDecimal(text) else { return false }
            if let maximum = condition.maximum, amount > maximum { return false }
            if let minimum = condition.minimum, amount < minimum { return false }
        }
        if let pattern = condition.pattern, !pattern.allows(text) { return false }
        return true
    }
}

extension PolicyReader {
    func approvalPolicy(_ root: Node) throws(PolicyError) -> ApprovalPolicy {
        let fields = try mapping(root, what: "the approval policy", keys: ["version", "rules", "default"], required: ["version", "rules"])
        let version = try scalar(fields["version"]!, what: "version")
        guard version.string == "1", version.style == .plain else {
            throw PolicyError(.invalidValue, "version is 1 (the only version of the language), not '\(version.string)'", line: line(fields["version"]))
        }
        var rules: [ApprovalPolicy.Rule] = []
        for item in try sequence(fields["rules"]!, what: "rules") {
            let rule = try approvalRule(item)
            if rules.contains(where: { $0.name == rule.name }) {
                throw PolicyError(.duplicateKey, "two rules are named '\(rule.name)'", line: line(item))
            }
            rules.append(rule)
        }
        var fallback = ApprovalPolicy.Decision.skip
        if let node = fields["default"] {
            fallback = try decision(node)
            guard fallback != .approve else {
                throw PolicyError(.invalidValue, "default is skip or reject: approving what no rule names is not a default", line: line(node))
            }
        }
        return ApprovalPolicy(rules: rules, defaultDecision: fallback)
    }

    func decision(_ node: Node) throws(PolicyError) -> ApprovalPolicy.Decision {
        let text = try scalar(node, what: "a decision").string
        guard let decision = ApprovalPolicy.Decision(rawValue: text) else {
            throw PolicyError(.invalidValue, "a decision is approve, reject or skip, not '\(text)'", line: line(node))
        }
        return decision
    }

    func approvalRule(_ node: Node) throws(PolicyError) -> ApprovalPolicy.Rule {
        let fields = try mapping(node, what: "a rule", keys: ["name", "requestTypes", "when", "decision", "reason"], required: ["name", "decision"])
        let name = try identifier(fields["name"]!, what: "a rule's name")
        let decision = try decision(fields["decision"]!)
        let reason = try fields["reason"].map { node throws(PolicyError) in try scalar(node, what: "reason").string }
        if decision == .reject, (reason ?? "").isEmpty {
            throw PolicyError(.missingKey, "rule '\(name)' rejects: give it a 'reason'", line: line(node))
        }
        let types = try fields["requestTypes"].map { node throws(PolicyError) in try stringSet(node, what: "requestTypes") }
        var conditions: [ApprovalPolicy.Condition] = []
        if let node = fields["when"] {
            for item in try sequence(node, what: "when") {
                let condition = try mapping(item, what: "a condition", keys: ["field", "in", "max", "min", "pattern"], required: ["field"])
                let path = try scalar(condition["field"]!, what: "field").string.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                guard !path.contains(where: \.isEmpty) else {
                    throw PolicyError(.invalidValue, "field is a dot-separated path into requestData, e.g. transfer.amount", line: line(condition["field"]))
                }
                var pattern: NoteRule?
                if let patternNode = condition["pattern"] {
                    do {
                        pattern = try NoteRule(required: true, pattern: try scalar(patternNode, what: "pattern").string)
                    } catch let error as PolicyError {
                        throw error
                    } catch {
                        throw PolicyError(.invalidValue, "pattern is not a regular expression without capture groups (use (?:…) to group): \(error)",
                                          line: line(patternNode))
                    }
                }
                conditions.append(ApprovalPolicy.Condition(
                    field: path,
                    oneOf: try condition["in"].map { node throws(PolicyError) in try stringSet(node, what: "in") },
                    maximum: try condition["max"].map { node throws(PolicyError) in try amount(node, what: "max") },
                    minimum: try condition["min"].map { node throws(PolicyError) in try amount(node, what: "min") },
                    pattern: pattern))
            }
        }
        if decision == .approve, types == nil {
            throw PolicyError(.missingKey, "rule '\(name)' approves: name its requestTypes (approving any type is not a rule)", line: line(node))
        }
        return ApprovalPolicy.Rule(name: name, requestTypes: types, conditions: conditions, decision: decision, reason: reason)
    }
}

extension ApprovalPolicy {
    /// Reads `path` under TrustedFile's rule for configuration (whoever can write it decides what
    /// the token approves) and parses it; errors carry the path and the line. Returns the policy
    /// and the SHA-256 of its bytes.
    public static func load(path: String) throws(PolicyError) -> (policy: ApprovalPolicy, sha256: String) {
        let bytes: [UInt8]
        do {
            bytes = try TrustedFile.read(path, for: .configures, limit: Policy.maximumTextSize + 1)
        } catch {
            let remedy = TrustedFile.remedy(for: error).map { " (\($0))" } ?? ""
            throw PolicyError(error.code == .unreadable ? .unreadable : .untrusted,
                              "the approval policy file cannot be trusted or read: \(error.description)\(remedy)", path: path)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PolicyError(.syntax, "the policy is not UTF-8 text", path: path)
        }
        do {
            return (try ApprovalPolicy(yaml: text), hex(SHA256.hash(data: bytes)))
        } catch {
            throw error.reading(path)
        }
    }
}
