import FoundationEssentials
import Hummingbird
import OffswitchAPI
import OffswitchCore
import OffswitchTrials

/// `/v1/sandboxes/{id}/baseline` and `/judgement`: evidence for any task on a plain sandbox. The
/// harness says when the agent gets the sandbox, and later asks whether it tampered with the
/// files it names or PID 1 (`Protection`, docs/verdicts.md). Each judgement is kept in a directory
/// of STATE/trials (events.ndjson, judgement.json), served as a trial's files are and kept as
/// `--keep-trials` says.
struct JudgementRoutes {
    let registry: SandboxRegistry

    func add(to table: RouteTable) {
        let registry = self.registry, directories = registry.trialDirectories
        table.on(.post, "/v1/sandboxes/:id/baseline") { request, context in
            let sandbox = try await registry.plainSandbox(try context.parameters.require("id"))
            let body = try await request.decode(as: BaselineBody.self, context: context)
            let protect = try Judgement.checkedPaths(body.protect ?? [], field: "protect")
            let (seq, state) = try await BlockingWork.run { () throws(OffswitchError) in try Protection.baseline(sandbox, protect: protect) }
            return RouteTable.raw(JSONValue.object([("baseline_event", .uint(seq)), ("state", state)]).serialized + "\n", type: "application/json")
        }
        table.on(.post, "/v1/sandboxes/:id/judgement") { request, context in
            let sandbox = try await registry.plainSandbox(try context.parameters.require("id"))
            let body = try await request.decode(as: JudgementBody.self, context: context)
            let protect = try Judgement.checkedPaths(body.protect ?? [], field: "protect")
            let pid1 = body.pid1 ?? true
            do {
                try FileManager.default.createDirectory(atPath: directories.directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw OffswitchError(.system, "cannot create \(directories.directory): \(error)")
            }
            let id = TrialRoutes.newID(), output = directories.directory + "/" + id
            // Being written: no sweep takes it.
            directories.started(id)
            let judgement: Judgement
            do {
                judgement = try await BlockingWork.run { () throws(OffswitchError) in
                    try Protection.judge(sandbox, protect: protect, pid1: pid1, directory: output)
                }
            } catch {
                directories.ended(id)
                removeTree(output)
                throw error
            }
            directories.ended(id)
            await directories.sweepInBackground()
            let reply = JSONValue.object([("id", .string(id)), ("directory", .string(output)), ("judgement", judgement.json)])
            return RouteTable.raw(reply.serialized + "\n", type: "application/json")
        }
    }
}
