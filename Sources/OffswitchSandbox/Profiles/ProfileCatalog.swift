import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchYAML

/// The bundled profiles (`sandbox-profiles/NAME.yaml`) and the rule that turns what a user typed
/// into a profile: a name is a bundled profile; anything with a `/` or ending in `.yaml` is a file.
public enum ProfileCatalog {
    public static let defaultName = "docker"

    /// The directory of bundled profiles.
    public static func directory() throws(OffswitchError) -> String {
        try BundledFiles.path("sandbox-profiles")
    }

    /// Names of the bundled profiles, sorted.
    public static func names() throws(OffswitchError) -> [String] {
        let dir = try directory()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            throw OffswitchError(.system, "cannot list \(dir)", errno: errno)
        }
        return entries.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    public static func isFile(_ reference: String) -> Bool {
        reference.contains("/") || reference.hasSuffix(".yaml") || reference.hasSuffix(".yml")
    }

    /// The path `reference` names, bundled or not.
    public static func path(of reference: String) throws(OffswitchError) -> String {
        if isFile(reference) { return reference }
        let available = try names()
        guard available.contains(reference) else {
            throw OffswitchError(.invalidProfile,
                                 "unknown profile \"\(reference)\" (bundled: \(available.joined(separator: ", ")); a file path needs a / or .yaml)")
        }
        return try directory() + "/" + reference + ".yaml"
    }

    /// Loads and checks a profile by name or path; every error is in the thrown message, one a line.
    public static func load(_ reference: String) throws(OffswitchError) -> Profile {
        let path = try path(of: reference)
        let outcome = ProfileReader.read(path: path)
        guard let profile = outcome.profile else {
            throw OffswitchError(.invalidProfile, outcome.errors.map(\.description).joined(separator: "\n"))
        }
        return profile
    }

    /// Loads a bundled profile only (what the daemon accepts from API clients: a client must not
    /// make the daemon read host paths of its choosing).
    public static func loadBundled(_ name: String) throws(OffswitchError) -> Profile {
        guard !isFile(name) else {
            throw OffswitchError(.invalidProfile, "profile \"\(name)\": the API takes the name of a bundled profile, not a path")
        }
        return try load(name)
    }
}
