import OffswitchCore
import Testing

@Suite("Control protocol")
struct WireTests {
    static let identity = Identity(uid: 1000, gid: 1000, groups: [1000, 5], capabilities: 0xa80425fb)

    static let requests: [InitRequest] = [
        .setup(SetupOrder(
            hostname: "abc", rootMountPoint: "/run/offswitch/sandboxes/x/root",
            rootOverlay: OverlayLayout(lower: ["/a", "/b"], upper: "/u", work: "/w"),
            usrOverlay: OverlayLayout(lower: ["/usr"], upper: "/uu", work: "/uw"), tmpSizeBytes: 1 << 20,
            agentUID: 1000, agentGID: 1000, capabilityBound: 0xa80425fb, noNewPrivileges: false, seccompProgram: [1, 2, 3, 4, 5, 6, 7, 8],
            seccompFlags: 6, limits: [ResourceLimit(resource: 7, soft: 1024, hard: 2048)],
            userNamespace: UserNamespaceMapping(hostUID: 1 << 30, hostGID: (1 << 30) + 65536, size: 65536),
            recorderListener: true, ownsNetwork: false,
            tmpfs: [TmpfsMount(path: "/run", sizeBytes: 1 << 20), TmpfsMount(path: "/var/cache/é", sizeBytes: 64 << 20, mode: 0o1770)])),
        .setup(SetupOrder(
            hostname: "é", rootMountPoint: "/r", rootOverlay: OverlayLayout(lower: [], upper: "", work: ""), usrOverlay: nil,
            tmpSizeBytes: 0, agentUID: 0, agentGID: 0, capabilityBound: 0, noNewPrivileges: true, seccompProgram: [], limits: [],
            userNamespace: UserNamespaceMapping(hostUID: 0, hostGID: 0, size: 0))),
        .exec(ExecOrder(argv: ["bash", "-c", "echo 'ü'"], environment: ["A=1", "B="], cwd: "/home/user", identity: identity,
                        timeoutMilliseconds: 15000, controllingTTY: true)),
        .openFile(FileOrder(path: "/home/user/shutdown.sh", mode: .write, createMode: 0o755, identity: identity)),
        .openPTY,
    ]

    @Test("Every request survives a round trip", arguments: requests)
    func roundTrip(request: InitRequest) throws {
        #expect(try InitRequest.decode(request.encoded()) == request)
    }

    @Test("Truncated, padded and foreign messages are refused, never crash")
    func malformed() {
        for request in Self.requests {
            let bytes = request.encoded()
            for cut in 0..<bytes.count {
                #expect(throws: OffswitchError.self) { try InitRequest.decode(Array(bytes.prefix(cut))) }
            }
            #expect(throws: OffswitchError.self) { try InitRequest.decode(bytes + [0]) }
        }
        var wrongVersion = WireWriter()
        wrongVersion.u32(ControlProtocol.version + 1)
        wrongVersion.u8(4)
        #expect(throws: OffswitchError.self) { try InitRequest.decode(wrongVersion.bytes) }
        var hugeCount = WireWriter()
        hugeCount.u32(ControlProtocol.version)
        hugeCount.u8(2)
        hugeCount.u32(UInt32.max)
        #expect(throws: OffswitchError.self) { try InitRequest.decode(hugeCount.bytes) }
    }

    @Test("Reports and exec statuses round-trip")
    func reports() throws {
        let reports: [InitReport] = [
            .ready(capabilities: 5, listener: true), .ready(capabilities: 0, listener: false), .setupFailed(stage: "mount(overlay, /x)", errno: 22),
            .shutdown(ShutdownInfo(signal: 15, senderPID: 7, senderUID: 1000, unixNanoseconds: 123, code: -1)),
            .refused("tmpfs[1].path: /data is a symbolic link"),
        ]
        for report in reports { #expect(try InitReport.decode(report.encoded()) == report) }
        let statuses: [ExecStatus] = [.started(pid: 9), .spawnFailed(stage: 9, errno: 2), .exited(status: 0x0900, timedOut: true)]
        for status in statuses {
            #expect(status.encoded().count == ExecStatus.recordSize)
            #expect(try ExecStatus.decode(status.encoded()) == status)
        }
    }
}

@Suite("Value types")
struct ValueTypeTests {
    @Test("Docker's default capability set is what /proc shows in Docker")
    func dockerCapabilities() throws {
        #expect(CapabilitySet.dockerDefault.hex == "00000000a80425fb")
        #expect(try CapabilitySet(names: ["chown", "CAP_KILL"]).mask == 0b100001)
        #expect(throws: OffswitchError.self) { try CapabilitySet(names: ["CAP_FLY"]) }
        #expect(CapabilitySet.dockerDefault.contains("CAP_NET_RAW"))
        #expect(!CapabilitySet.dockerDefault.contains("CAP_SYS_ADMIN"))
    }

    @Test("Rootfs sources parse and name what is wrong")
    func rootfs() throws {
        #expect(try RootfsSource(parsing: "host") == .host)
        #expect(try RootfsSource(parsing: "dir:/srv/root") == .directory("/srv/root"))
        #expect(try RootfsSource(parsing: "image:debian:12") == .image("debian:12"))
        for bad in ["", "dir:", "dir:relative", "image:", "oci:debian"] {
            #expect { try RootfsSource(parsing: bad) } throws: { "\($0)".contains("rootfs") }
        }
    }

    @Test("Limits are validated field by field")
    func limits() {
        var limits = ResourceLimits.defaults
        #expect(throws: Never.self) { try limits.validate() }
        limits.cpus = 0
        #expect { try limits.validate() } throws: { "\($0)".contains("limits.cpus") }
    }

    @Test("Errors name the stage, the path and the errno")
    func errorText() {
        let error = OffswitchError.system("mount(overlay, /run/offswitch/x/root)", errno: 22)
        #expect(error.description == "mount(overlay, /run/offswitch/x/root): EINVAL (Invalid argument)")
        #expect(OffswitchError.system("open(/x)", errno: 2).code == .notFound)
        #expect(OffswitchError.system("open(/x)", errno: 13).code == .permissionDenied)
    }
}
