import Foundation
import Testing

/// docs/library.md cannot drift from code that compiles: each of its ```swift blocks must be, byte
/// for byte, in Examples.swift, which is compiled with the tests.
@Suite("docs/library.md")
struct LibraryExamplesTests {
    private static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    private static let repository = here.deletingLastPathComponent().deletingLastPathComponent()

    /// The fenced ```swift blocks of a Markdown text, without their fences.
    static func swiftBlocks(_ markdown: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```swift" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n") + "\n")
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    /// An example's `import` lines (which must be at the top of a file) and the rest of it,
    /// leading blank lines dropped.
    static func split(_ block: String) -> (imports: [String], body: String) {
        let lines = block.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let imports = lines.filter { $0.hasPrefix("import ") }
        let rest = lines.filter { !$0.hasPrefix("import ") }.drop { $0.isEmpty }
        return (imports, rest.joined(separator: "\n"))
    }

    @Test func everySwiftExampleOfTheDocIsCompiledVerbatim() throws {
        let doc = try String(contentsOf: Self.repository.appendingPathComponent("docs/library.md"), encoding: .utf8)
        let compiled = try String(contentsOf: Self.here.appendingPathComponent("Examples.swift"), encoding: .utf8)
        let blocks = Self.swiftBlocks(doc)
        #expect(blocks.count >= 3, "docs/library.md has \(blocks.count) swift examples")
        let compiledLines = Set(compiled.split(separator: "\n").map(String.init))
        for block in blocks {
            let (imports, body) = Self.split(block)
            #expect(compiled.contains(body), "this example of docs/library.md is not in Examples.swift verbatim:\n\(block)")
            for line in imports { #expect(compiledLines.contains(line), "Examples.swift lacks the example's '\(line)'") }
        }
    }

    @Test func theBlockReaderFindsBlocksAndOnlySwiftOnes() {
        let markdown = "text\n```swift\nlet a = 1\n```\n```sh\necho no\n```\n```swift\nlet b = 2\nlet c = 3\n```\n"
        #expect(Self.swiftBlocks(markdown) == ["let a = 1\n", "let b = 2\nlet c = 3\n"])
        let (imports, body) = Self.split("import A\nimport B\n\nlet a = 1\n")
        #expect(imports == ["import A", "import B"] && body == "let a = 1\n")
    }
}
