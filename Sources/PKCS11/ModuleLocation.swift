/// Where a PKCS#11 module comes from.
public enum ModuleLocation: Hashable, Sendable, CustomStringConvertible {
    /// p11-kit's proxy module: every module registered with p11-kit, as p11-kit-aware
    /// tools see them. The default.
    case p11KitProxy
    /// A module file. A bare file name (`libsofthsm2.so`) is looked up in p11-kit's module
    /// directory; anything with a `/` is used as given.
    case path(String)
    /// A module registered with p11-kit under this name (`p11-kit list-modules`), e.g. `softhsm2`.
    case registeredName(String)

    /// Interprets a command-line value: a path when it contains `/` or ends in `.so`,
    /// otherwise a p11-kit registered module name.
    public init(argument: String) {
        if argument.contains("/") || argument.hasSuffix(".so") || argument.contains(".so.") {
            self = .path(argument)
        } else {
            self = .registeredName(argument)
        }
    }

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .p11KitProxy: return "p11-kit-proxy"
        case .path(let path): return path
        case .registeredName(let name): return name
        }
    }
}
