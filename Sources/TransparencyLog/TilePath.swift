/// A tile of a tree kept as C2SP tlog-tiles (c2sp.org/tlog-tiles): the hashes at one level of
/// the tree, 256 to a full tile.
///
/// The *n*-th tile at level *l* holds, for *i* from 0 to 255, MTH(D[(n·256 + i)·256^l ..<
/// (n·256 + i + 1)·256^l]): at level 0 the leaf hashes, at level 1 and above the root of each
/// full tile of the level below. A tree whose size is not a multiple of 256^(l+1) has one
/// *partial* tile at level *l* on its right edge, holding floor(size / 256^l) mod 256 hashes
/// (none: no tile). Tiles are named `tile/<L>/<N>[.p/<W>]`, `<N>` in zero-padded 3-digit
/// groups, all but the last prefixed with `x` (index 1234067 is `x001/x234/067`).
public struct TileCoordinate: Hashable, Sendable, CustomStringConvertible {
    /// Levels of the tree one tile spans.
    public static let height = 8
    /// Hashes in a full tile.
    public static let fullWidth = 256
    /// Bytes of one hash.
    public static let hashSize = 32
    /// The highest level C2SP allows in a tile path.
    public static let maximumLevel = 63

    /// The tile's level: 0 for leaf hashes.
    public let level: Int
    /// Its index within the level.
    public let index: Int
    /// Its hashes: 256 when full, 1…255 when partial.
    public let width: Int

    /// A tile; nil outside the ranges C2SP allows (level 0…63, index ≥ 0, width 1…256).
    public init?(level: Int, index: Int, width: Int = TileCoordinate.fullWidth) {
        guard (0...Self.maximumLevel).contains(level), index >= 0, (1...Self.fullWidth).contains(width) else { return nil }
        self.level = level
        self.index = index
        self.width = width
    }

    /// Whether the tile is full (256 hashes).
    public var isFull: Bool { width == Self.fullWidth }

    /// The same tile at full width.
    public var full: TileCoordinate { TileCoordinate(checkedLevel: level, index: index, width: Self.fullWidth) }

    private init(checkedLevel level: Int, index: Int, width: Int) {
        self.level = level
        self.index = index
        self.width = width
    }

    /// `tile/<L>/<N>` or `tile/<L>/<N>.p/<W>`.
    public var path: String {
        "tile/\(level)/\(Self.encode(index: index))" + (isFull ? "" : ".p/\(width)")
    }

    /// The path.
    public var description: String { path }

    /// The bytes of the tile: its hashes, concatenated.
    public var byteCount: Int { width * Self.hashSize }

    /// `<N>` of a tile path: zero-padded 3-digit groups, all but the last prefixed with `x`.
    public static func encode(index: Int) -> String {
        func threeDigits(_ value: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: 3 - digits.count) + digits
        }
        var rest = index / 1000
        var groups = [threeDigits(index % 1000)]
        while rest > 0 {
            groups.append("x" + threeDigits(rest % 1000))
            rest /= 1000
        }
        return groups.reversed().joined(separator: "/")
    }

    /// Parses a tile path strictly: only the canonical spelling of a tile (no leading zeros in
    /// `<L>` or `<W>`, no empty leading `x000` group, a partial width below 256) is one.
    public init?(path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[0] == "tile", let level = Self.decimal(parts[1]) else { return nil }
        var groups = Array(parts[2...])
        var width = Self.fullWidth
        if groups.count >= 2, groups[groups.count - 2].hasSuffix(".p") {
            guard let partial = Self.decimal(groups[groups.count - 1]), partial >= 1, partial < Self.fullWidth else { return nil }
            width = partial
            groups.removeLast()
            groups[groups.count - 1] = String(groups[groups.count - 1].dropLast(2))
        }
        var index = 0
        for (position, group) in groups.enumerated() {
            let last = position == groups.count - 1
            let digits = last ? Substring(group) : (group.hasPrefix("x") ? group.dropFirst() : "")
            guard digits.count == 3, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = Int(digits) else { return nil }
            let (shifted, overflow) = index.multipliedReportingOverflow(by: 1000)
            guard !overflow else { return nil }
            index = shifted + value
        }
        guard let tile = TileCoordinate(level: level, index: index, width: width), tile.path == path else { return nil }
        self = tile
    }

    /// A decimal number without leading zeros (or "0").
    private static func decimal(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              text == "0" || !text.hasPrefix("0") else { return nil }
        return Int(text)
    }

    /// Leaves under one hash of `level`: 256^level; nil when that does not fit an `Int`.
    public static func span(level: Int) -> Int? {
        guard level >= 0 else { return nil }
        var span = 1
        for _ in 0..<level {
            let (next, overflow) = span.multipliedReportingOverflow(by: Self.fullWidth)
            guard !overflow else { return nil }
            span = next
        }
        return span
    }

    /// Hashes at `level` in a tree of `treeSize` leaves (each the root of a full subtree).
    public static func hashCount(level: Int, treeSize: Int) -> Int {
        guard let span = span(level: level), treeSize > 0 else { return 0 }
        return treeSize / span
    }

    /// The tile holding hash `hashIndex` of `level` in a tree of `treeSize` leaves, at the width
    /// that tree gives it; nil when the tree has no such hash.
    public static func holding(level: Int, hashIndex: Int, treeSize: Int) -> TileCoordinate? {
        let count = hashCount(level: level, treeSize: treeSize)
        guard hashIndex >= 0, hashIndex < count else { return nil }
        let index = hashIndex / Self.fullWidth
        return TileCoordinate(level: level, index: index, width: min(Self.fullWidth, count - index * Self.fullWidth))
    }

    /// The partial tiles of a tree of `treeSize` leaves, lowest level first: its right edge.
    public static func rightEdge(treeSize: Int) -> [TileCoordinate] {
        var tiles: [TileCoordinate] = []
        var level = 0
        while hashCount(level: level, treeSize: treeSize) > 0 {
            let count = hashCount(level: level, treeSize: treeSize)
            if count % Self.fullWidth != 0, let tile = TileCoordinate(level: level, index: count / Self.fullWidth, width: count % Self.fullWidth) {
                tiles.append(tile)
            }
            level += 1
        }
        return tiles
    }

    /// The number of full tiles at `level` in a tree of `treeSize` leaves.
    public static func fullTileCount(level: Int, treeSize: Int) -> Int {
        hashCount(level: level, treeSize: treeSize) / Self.fullWidth
    }

    /// Whether a tree of `treeSize` leaves holds every hash of this tile (at its width).
    public func isWithin(treeSize: Int) -> Bool {
        let count = Self.hashCount(level: level, treeSize: treeSize)
        let (start, overflow) = index.multipliedReportingOverflow(by: Self.fullWidth)
        return !overflow && start + width <= count
    }
}
