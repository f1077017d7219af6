import ArgumentParser
import FoundationEssentials
import OffswitchCore
import OffswitchYAML
import OffswitchSandbox

/// `offswitch profile check|show|ls`: sandbox profiles as files security teams read and tighten.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Check, show and list sandbox profiles (format: docs/profiles.md).",
        discussion: """
            A profile is NAME (bundled in sandbox-profiles/) or a FILE path (anything with a / or \
            ending in .yaml). Bundled: docker (the default, what Palisade's containers had), \
            hardened and observe.
            """,
        subcommands: [Check.self, Show.self, Ls.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate profiles (or seccomp JSON policies) without running anything.",
            discussion: """
                Prints every problem as FILE: FIELD.PATH: reason, warnings as FILE: FIELD.PATH: \
                warning: reason, and `FILE: ok` for a file without errors. Exit status 1 when any \
                file has an error. A .json file is checked as an OCI/Docker seccomp policy.

                Example: offswitch profile check sandbox-profiles/*.yaml my-policy.json
                """)

        @Argument(help: "Profile names or files, or seccomp .json files.")
        var files: [String]

        @Flag(name: .long, help: "Do not print warnings.")
        var quiet = false

        func run() throws {
            var failed = false
            for reference in files {
                let (label, problems) = ProfileReader.check(reference)
                for problem in problems where !(quiet && problem.isWarning) {
                    StandardStreams.out(problem.description + "\n")
                }
                if problems.contains(where: { !$0.isWarning }) {
                    failed = true
                } else {
                    StandardStreams.out("\(label): ok\n")
                }
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a profile's effective policy on this machine, as JSON.",
            discussion: """
                Docker's includes and excludes are resolved against the profile's capabilities, \
                this architecture and this kernel; syscall names this libseccomp does not know are \
                left out and listed under `skipped`. The document is described in docs/profiles.md.
                """)

        @Argument(help: "A bundled profile name or a profile file.")
        var profile: String

        func run() throws {
            let loaded: Profile
            do {
                loaded = try ProfileCatalog.load(profile)
            } catch {
                StandardStreams.err("offswitch: \(error.message)\n")
                throw ExitCode(1)
            }
            StandardStreams.out(try EffectiveProfile.json(loaded) + "\n")
        }
    }

    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the bundled profiles.")

        func run() throws {
            let names: [String]
            do {
                names = try ProfileCatalog.names()
            } catch {
                StandardStreams.err("offswitch: \(error.message)\n")
                throw ExitCode(1)
            }
            for name in names {
                let summary: String
                do {
                    summary = try ProfileCatalog.load(name).description
                } catch {
                    summary = "(broken: run offswitch profile check \(name))"
                }
                StandardStreams.out(name + String(repeating: " ", count: max(1, 10 - name.count)) + summary + "\n")
            }
        }
    }
}
