/// The tool's version (shown by `--version`; later part of the HTTP User-Agent).
public enum FireblocksHSMVersion {
    /// The version of this tool.
    public static let current = "0.1.0"
}
