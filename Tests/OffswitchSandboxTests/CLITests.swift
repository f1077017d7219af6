import Foundation
import Glibc
import OffswitchTestSupport
import Testing

@Suite("CLI behaviour", needsRoot)
struct CLITests {
    private func run(_ arguments: [String], stdin: Foundation.Pipe) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = arguments
        process.environment = embeddedEnvironment
        let out = Foundation.Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("-i passes stdin; without it an open stdin pipe cannot hang the command")
    func stdinHandling() throws {
        let feed = Foundation.Pipe()
        feed.fileHandleForWriting.write(Data("print(6*7)\n".utf8))
        try feed.fileHandleForWriting.close()
        let (status, output) = try run(["sandbox", "run", "-i", "--", "python3"], stdin: feed)
        #expect(status == 0 && output == "42\n")

        let open = Foundation.Pipe()  // never written, never closed until the end
        defer { try? open.fileHandleForWriting.close() }
        let (status2, output2) = try run(["sandbox", "run", "--", "sh", "-c", "cat; echo done"], stdin: open)
        #expect(status2 == 0 && output2 == "done\n")
    }

    @Test("Usage errors name what is missing")
    func usage() throws {
        let missing = try runCLI(["sandbox", "run"])
        #expect(missing.status != 0 && missing.stderr.contains("Missing expected argument"))
        let user = try runCLI(["sandbox", "run", "--user", "admin", "--", "true"])
        #expect(user.status != 0 && user.stderr.contains("admin"))
        let help = try runCLI(["sandbox", "run", "--help"])
        #expect(help.stdout.contains("--timeout") && help.stdout.contains("Example"))
        #expect(help.stdout.contains("--no-new-privileges") && help.stdout.contains("--new-privileges"))
    }

    @Test("--no-new-privileges and --new-privileges override the profile's no_new_privileges")
    func newPrivileges() throws {
        for (options, expected) in [([], "0"), (["--no-new-privileges"], "1"), (["--profile", "hardened"], "1"),
                                    (["--profile", "hardened", "--new-privileges"], "0")] {
            let run = try runCLI(["sandbox", "run", "--embedded"] + options + ["--", "grep", "NoNewPrivs", "/proc/self/status"])
            #expect(run.status == 0 && run.stdout == "NoNewPrivs:\t\(expected)\n", "\(options): \(run.stdout)\(run.stderr)")
        }
    }
}
