import FoundationEssentials
import Hummingbird
import OffswitchAPI
import OffswitchCore
import OffswitchTrials

/// `/v1/scenarios`: what a remote harness needs of a bundled scenario (its prompts).
struct ScenarioRoutes {
    func add(to table: RouteTable) {
        table.on(.get, "/v1/scenarios/:name/prompts") { _, context in
            let name = try context.parameters.require("name")
            guard CreateTrialBody.validName(name) else {
                throw OffswitchError(.invalidScenario, "\"\(name)\" is not the name of a bundled scenario")
            }
            let scenario = try ScenarioCatalog.load(name)
            guard let prompts = scenario.prompts, let data = FileManager.default.contents(atPath: scenario.directory + "/" + prompts) else {
                throw OffswitchError(.notFound, "scenario \(name) has no prompts file")
            }
            return RouteTable.raw(String(decoding: data, as: UTF8.self), type: "application/yaml")
        }
    }
}
