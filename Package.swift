// swift-tools-version: 6.0
import PackageDescription

// Upcoming features from STYLE.md: explicit `any`, imports that say who sees them.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Offswitch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "offswitch", targets: ["offswitch"]),
        .executable(name: "offswitch-init", targets: ["offswitch-init"]),
        .executable(name: "offswitchd", targets: ["offswitchd"]),
        .library(name: "OffswitchSandbox", targets: ["OffswitchSandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        // Profiles are YAML; Yams also gives every node its line, for error messages.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System libraries: headers and link flags come from pkg-config; `make deps` installs them.
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        // zlib and zstd for image layers. pkg-config names one library per target: zlib's; libzstd's
        // header sits in the same include directory, and the module map links both.
        .systemLibrary(name: "CCompression", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev", "libzstd-dev"])]),
        // libcurl for `image pull`: HTTPS with the system's certificates and proxies.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // The C that Swift cannot or must not do; every symbol starts with `ofs_`.
        .target(name: "COffswitch", cSettings: [.define("_GNU_SOURCE")]),
        // The kernel recorder's loader (libbpf, `make deps` installs libbpf-dev), apart from COffswitch so
        // that offswitch-init never links libbpf; every symbol starts with `ofs_bpf_`. The BPF program
        // itself (Sources/offswitch-recorder) is built by make, against this kernel's BTF.
        .target(name: "COffswitchBPF", cSettings: [.define("_GNU_SOURCE")], linkerSettings: [.linkedLibrary("bpf")]),

        // The bottom: the error type, the vocabulary shared by host and PID 1, JSON, hashing, threads
        // and the system-call helpers every module uses.
        // Optimised in debug builds too: its SHA-256 hashes every image layer and teardown diff,
        // and unoptimised it took 3 minutes for a 250 MiB layer that takes seconds optimised.
        .target(name: "OffswitchCore", dependencies: ["COffswitch"],
                swiftSettings: strictSettings + [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        // The recorder: seccomp notifications, the event log. Decides nothing about verdicts.
        .target(name: "OffswitchEvidence", dependencies: ["OffswitchCore", "COffswitch", "COffswitchBPF", "CSeccomp"], swiftSettings: strictSettings),
        // The field reader of every YAML file people write (profiles, scenarios, agents, escape
        // attempts): each problem named by file, field path and line.
        .target(name: "OffswitchYAML", dependencies: ["OffswitchCore", .product(name: "Yams", package: "Yams")], swiftSettings: strictSettings),
        .target(
            name: "OffswitchSandbox",
            dependencies: ["OffswitchCore", "OffswitchYAML", "OffswitchEvidence", "OffswitchImages", "COffswitch", "CSeccomp", "CCap"],
            swiftSettings: strictSettings),
        // PID 1 inside the sandbox: single-threaded, no Foundation, no Dispatch.
        .target(name: "OffswitchInit", dependencies: ["OffswitchCore", "COffswitch"], swiftSettings: strictSettings),

        // JSON shapes of the HTTP API and the CLI's --json output, shared by daemon and CLI.
        .target(name: "OffswitchAPI", dependencies: ["OffswitchCore"], swiftSettings: strictSettings),
        // Trials: scenarios, scripted agents, the trial runner and the verdict (docs/verdicts.md).
        .target(
            name: "OffswitchTrials",
            dependencies: ["OffswitchCore", "OffswitchYAML", "OffswitchSandbox", "OffswitchEvidence", "OffswitchImages", "COffswitch"],
            swiftSettings: strictSettings),
        // The escape and abuse battery: attempts as data (scripts/escape-suite/), judged from the host.
        .target(name: "OffswitchContainment", dependencies: ["OffswitchCore", "OffswitchEvidence", "OffswitchYAML", "OffswitchSandbox", "COffswitch"],
                swiftSettings: strictSettings),
        // OCI images: layers unpacked (hostile archives, streamed) into overlay lower directories.
        .target(name: "OffswitchImages", dependencies: ["OffswitchCore", "COffswitch", "CCompression", "CCurl"], swiftSettings: strictSettings),
        // What people and other tools read: a trial's HTML report, batch summaries, exported rows.
        .target(name: "OffswitchReports", dependencies: ["OffswitchCore", "OffswitchTrials"], swiftSettings: strictSettings),
        // The daemon's HTTP API: routes, auth, metrics. No sandbox logic of its own.
        .target(
            name: "OffswitchServer",
            dependencies: [
                "OffswitchTrials",
                "OffswitchSandbox", "OffswitchEvidence", "OffswitchCore", "OffswitchAPI", "OffswitchImages",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "offswitchd",
            dependencies: [
                "OffswitchServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "offswitch",
            dependencies: [
                "OffswitchSandbox", "OffswitchEvidence", "OffswitchCore", "OffswitchAPI", "OffswitchTrials", "OffswitchReports", "OffswitchContainment", "OffswitchImages",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),
        // Linked with the Swift runtime inside: it is executed from a sealed memfd, where
        // $ORIGIN-relative library paths cannot resolve.
        .executableTarget(
            name: "offswitch-init",
            dependencies: ["OffswitchInit"],
            swiftSettings: strictSettings,
            linkerSettings: [
                .unsafeFlags(["-static-stdlib"]),
                // Stripped in release: it is copied into a memfd for every process that starts sandboxes.
                .unsafeFlags(["-Xlinker", "-s"], .when(configuration: .release)),
            ]),

        // Shared by the test targets (seeded fuzzing); not part of any product.
        .target(name: "OffswitchTestSupport", path: "Tests/OffswitchTestSupport", swiftSettings: strictSettings),
        .testTarget(name: "OffswitchCoreTests", dependencies: ["OffswitchCore", "COffswitch"], swiftSettings: strictSettings),
        .testTarget(
            name: "OffswitchImagesTests",
            dependencies: ["OffswitchImages", "OffswitchCore", "COffswitch", "OffswitchTestSupport"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OffswitchServerTests",
            dependencies: ["OffswitchServer", "OffswitchSandbox", "OffswitchCore", "OffswitchAPI", "OffswitchTestSupport"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OffswitchTrialsTests",
            dependencies: ["OffswitchTrials", "OffswitchReports", "OffswitchSandbox", "OffswitchImages", "OffswitchCore", "OffswitchAPI", "OffswitchTestSupport"],
            // Recorded trial directories: the classifier's rules tested without root.
            exclude: ["Fixtures"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OffswitchSandboxTests",
            dependencies: ["OffswitchContainment", "OffswitchSandbox", "OffswitchCore", "OffswitchYAML", "OffswitchEvidence", "OffswitchImages", "COffswitch", "OffswitchTestSupport"],
            swiftSettings: strictSettings),
    ]
)
