import Foundation
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox
import Testing

/// The four fields a compose file brings (`network`, `hosts`, `read_only`, `tmpfs`), checked as
/// `POST /v1/sandboxes` bodies, written out as a client sends them. No root: nothing is started.
@Suite("Create body: network, hosts, read_only, tmpfs")
struct ComposeFieldTests {
    /// The body's spec on the bundled docker profile (256 MiB of memory).
    static func spec(_ json: String) throws -> SandboxSpec {
        let body = try APIJSON.decode(CreateSandboxBody.self, from: Array(json.utf8))
        return try body.spec(profile: ProfileCatalog.loadBundled("docker"))
    }

    /// The refusal of the body's spec.
    static func refusal(_ json: String) throws -> OffswitchError? {
        do {
            _ = try spec(json)
            return nil
        } catch let error as OffswitchError {
            return error
        }
    }

    @Test("Accepted bodies become the spec: the joined sandbox, sorted canonical hosts, tmpfs defaults")
    func accepted() throws {
        let spec = try Self.spec("""
            {"network": "sandbox:0123456789ab", "hosts": {"web": "127.0.0.1", "db.internal": "::0001", "Cache_1": "10.0.0.7"},
             "read_only": true, "limits": {"memory_mib": 64},
             "tmpfs": [{"path": "/run"}, {"path": "/var/cache/app", "size_mib": 8, "mode": "1770"}, {"path": "/dev/shm", "size_mib": 2}]}
            """)
        #expect(spec.network == .sandbox("0123456789ab"))
        #expect(spec.hosts == [entry("Cache_1", "10.0.0.7"), entry("db.internal", "::1"), entry("web", "127.0.0.1")])
        #expect(spec.hosts.map(\.line).joined() == "10.0.0.7\tCache_1\n::1\tdb.internal\n127.0.0.1\tweb\n")
        #expect(spec.readOnlyRoot)
        #expect(spec.tmpfs == [TmpfsMount(path: "/run", sizeBytes: 64 << 20, mode: 0o1777),
                               TmpfsMount(path: "/var/cache/app", sizeBytes: 8 << 20, mode: 0o1770),
                               TmpfsMount(path: "/dev/shm", sizeBytes: 2 << 20, mode: 0o1777)])

        let plain = try Self.spec(#"{"network": "none", "read_only": false}"#)
        #expect(plain.network == .own && !plain.readOnlyRoot && plain.hosts.isEmpty && plain.tmpfs.isEmpty)
        #expect(try Self.spec("{}") == ProfileCatalog.loadBundled("docker").sandboxSpec)
    }

    /// Bodies a client may send and the field each refusal must name.
    static let refused: [(body: String, names: String)] = [
        (#"{"network": "bridge"}"#, "network"),
        (#"{"network": "host"}"#, "network"),
        (#"{"network": "sandbox:"}"#, "network"),
        (#"{"network": "container:abc"}"#, "network"),
        (#"{"network": "sandbox:\#(String(repeating: "a", count: 65))"}"#, "network"),
        (#"{"hosts": {"a b": "1.2.3.4"}}"#, "hosts.a b"),
        (#"{"hosts": {"web\n6.6.6.6 evil": "1.2.3.4"}}"#, "hosts.web\\u{a}6.6.6.6 evil"),
        (#"{"hosts": {"web": "1.2.3.4\n6.6.6.6 evil"}}"#, "hosts.web"),
        (#"{"hosts": {"web": "1.2.3.4 evil"}}"#, "hosts.web"),
        (#"{"hosts": {"web\tevil": "1.2.3.4"}}"#, "hosts.web\\u{9}evil"),
        (##"{"hosts": {"#evil": "1.2.3.4"}}"##, "hosts.#evil"),
        (#"{"hosts": {"-web": "1.2.3.4"}}"#, "hosts.-web"),
        (#"{"hosts": {".web": "1.2.3.4"}}"#, "hosts..web"),
        (#"{"hosts": {"": "1.2.3.4"}}"#, "hosts."),
        (#"{"hosts": {"wéb": "1.2.3.4"}}"#, "hosts.wéb"),
        (#"{"hosts": {"\#(String(repeating: "a", count: 254))": "1.2.3.4"}}"#, "hosts.aaaa"),
        (#"{"hosts": {"web": "1.2.3"}}"#, "hosts.web"),
        (#"{"hosts": {"web": " 1.2.3.4"}}"#, "hosts.web"),
        (#"{"hosts": {"web": "fe80::1%eth0"}}"#, "hosts.web"),
        (#"{"hosts": {"web": "localhost"}}"#, "hosts.web"),
        (#"{"hosts": {"web": "1.2.3.4\u0000"}}"#, "hosts.web"),
        (#"{"hosts": {\#((0...64).map { "\"h\($0)\": \"10.0.0.1\"" }.joined(separator: ", "))}}"#, "hosts"),
        (#"{"tmpfs": [{"path": "relative/dir"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/ok"}, {"path": "/a/../etc"}]}"#, "tmpfs[1].path"),
        (#"{"tmpfs": [{"path": "/a/./b"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/a//b"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/a/"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/proc"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/proc/sys"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/sys/fs/cgroup"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/dev"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/dev/pts"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/dev/shm/x"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/a\u0000b"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/\#(String(repeating: "x", count: 256))"}]}"#, "tmpfs[0].path"),
        (#"{"tmpfs": [{"path": "/run"}, {"path": "/data"}, {"path": "/run"}]}"#, "tmpfs[2].path"),
        (#"{"tmpfs": [\#((0...16).map { "{\"path\": \"/m\($0)\"}" }.joined(separator: ", "))]}"#, "tmpfs"),
        (#"{"tmpfs": [{"path": "/run", "size_mib": 0}]}"#, "tmpfs[0].size_mib"),
        (#"{"tmpfs": [{"path": "/run", "size_mib": 257}]}"#, "tmpfs[0].size_mib"),
        (#"{"tmpfs": [{"path": "/run", "size_mib": 17592186044416}]}"#, "tmpfs[0].size_mib"),
        (#"{"tmpfs": [{"path": "/run", "size_mib": 18446744073709551615}]}"#, "tmpfs[0].size_mib"),
        (#"{"limits": {"memory_mib": 32}, "tmpfs": [{"path": "/run", "size_mib": 33}]}"#, "tmpfs[0].size_mib"),
        (#"{"tmpfs": [{"path": "/run", "mode": "8"}]}"#, "tmpfs[0].mode"),
        (#"{"tmpfs": [{"path": "/run", "mode": "17777"}]}"#, "tmpfs[0].mode"),
        (#"{"tmpfs": [{"path": "/run", "mode": "rwx"}]}"#, "tmpfs[0].mode"),
    ]

    @Test("Refusals are invalid_argument and name the field", arguments: refused)
    func refusals(body: String, names field: String) throws {
        let error = try #require(try Self.refusal(body), "accepted: \(body)")
        #expect(error.code == .invalidArgument)
        #expect(error.message.hasPrefix(field), "\(error.message)")
    }

    @Test("A scenario sandbox refuses each of the four, as it refuses env")
    func scenario() throws {
        for (field, value) in [("network", #""sandbox:abc""#), ("hosts", #"{"web": "127.0.0.1"}"#), ("read_only", "true"),
                               ("read_only", "false"), ("tmpfs", #"[{"path": "/run"}]"#)] {
            let body = try APIJSON.decode(CreateSandboxBody.self, from: Array(#"{"scenario": "palisade-math", "\#(field)": \#(value)}"#.utf8))
            #expect(throws: OffswitchError.self) { try body.scenarioBody() }
            do { _ = try body.scenarioBody() } catch { #expect(error.message.hasPrefix(field + ":"), "\(error.message)") }
        }
    }

    @Test("The runtime checks again what a library caller may have changed after parsing")
    func runtimeChecks() throws {
        var entries = try HostEntry.parse(["web": "127.0.0.1"])
        try HostEntry.check(entries)
        entries[0].name = "web\n6.6.6.6 evil"
        #expect(throws: OffswitchError.self) { try HostEntry.check(entries) }
        entries[0].name = "web"
        entries[0].address = "127.0.0.1 evil"
        #expect(throws: OffswitchError.self) { try HostEntry.check(entries) }
        #expect(throws: OffswitchError.self) { try TmpfsMount.checkList([TmpfsMount(path: "/run", sizeBytes: 0)], memoryBytes: 1 << 30) }
        #expect(throws: OffswitchError.self) { try TmpfsMount.checkList([TmpfsMount(path: "/run", sizeBytes: 1 << 20, mode: 0o17777)], memoryBytes: 1 << 30) }
        #expect(throws: OffswitchError.self) { try TmpfsMount.checkList([TmpfsMount(path: "/../x", sizeBytes: 1 << 20)], memoryBytes: 1 << 30) }
        try TmpfsMount.checkList([TmpfsMount(path: "/run", sizeBytes: 1 << 20)], memoryBytes: 1 << 30)
        #expect(try SandboxNetwork(parsing: "sandbox:x").description == "sandbox:x")
        #expect(try SandboxNetwork(parsing: "none").description == "none")
    }
}

/// A host entry as `HostEntry.parse` makes it, for comparisons.
private func entry(_ name: String, _ address: String) -> HostEntry {
    try! HostEntry.parse([name: address])[0]
}
