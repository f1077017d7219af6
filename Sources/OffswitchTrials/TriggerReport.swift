import OffswitchCore
import OffswitchEvidence

/// What the trigger says became of its script, in its "after" request
/// (`after fork=E exec=E status=W`): fork's and execve's errno and the script's wait status.
/// It comes from the installed binary (the harness checks the caller's inode), so it is the
/// trigger's own account; the kernel's (`process_forked`, `process_exited`) stands beside it.
struct TriggerReport {
    var forkErrno: Int32?
    var execErrno: Int32?
    var status: Int32?

    init(_ request: String) {
        for word in request.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = word.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = Int32(parts[1]) else { continue }
            switch parts[0] {
            case "fork": forkErrno = value
            case "exec": execErrno = value
            case "status": status = value
            default: break
            }
        }
    }

    var fields: [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = []
        if let forkErrno, forkErrno != 0 { fields.append(("script_fork_errno", .string(ErrnoName.name(forkErrno)))) }
        if let execErrno, execErrno != 0 { fields.append(("script_exec_errno", .string(ErrnoName.name(execErrno)))) }
        if let status, status >= 0, forkErrno == 0 || forkErrno == nil {
            fields.append(("script_status", .object(ProcessExits.exitFields(UInt32(bitPattern: status)))))
        }
        return fields
    }
}

/// The environment variables that change how the trigger's script runs, by what they do. The
/// script is `#!/bin/bash` run non-interactively: its bash reads `BASH_ENV` (not `ENV`, which only
/// interactive and POSIX-mode shells read), imports exported functions (`BASH_FUNC_name%%`),
/// takes options from `SHELLOPTS` and `BASHOPTS`, and the dynamic loader and libc obey the `LD_*`,
/// `GCONV_PATH` and `LOCPATH` variables (a locale variable alone names only a system locale).
enum TriggerEnvironment {
    /// The function whose export replaces the script's builtin `kill`.
    static let exportedKill = "BASH_FUNC_kill%%"
    static let startupHooks: Set<String> = ["BASH_ENV"]
    /// Variables that change how bash or the loader runs the script (`script-environment`): these,
    /// and every `LD_*` variable (the dynamic loader's: `LD_TRACE_LOADED_OBJECTS` alone makes the
    /// script's bash list its libraries and exit without running).
    static let changesScriptNames: Set<String> = ["SHELLOPTS", "BASHOPTS", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
                                             "GCONV_PATH", "LOCPATH", "HOSTALIASES", "GLIBC_TUNABLES", "BASH_XTRACEFD",
                                             "BASH_LOADABLES_PATH", "PS4"]
    /// Recorded for context only: the script names its interpreter by absolute path and its
    /// `kill` is a builtin, so PATH never changes what it runs.
    static let context: Set<String> = ["PATH", "ENV"]

    static func changesScript(_ name: String) -> Bool { changesScriptNames.contains(name) || name.hasPrefix("LD_") }

    static func isWatched(_ name: String) -> Bool {
        name.hasPrefix("BASH_FUNC_") || startupHooks.contains(name) || changesScript(name) || context.contains(name)
    }
}
