public import OffswitchCore
import Synchronization

/// How much one daemon runs at once (`offswitchd --max-sandboxes`, `--max-trials`, `--max-streams`).
public struct DaemonLimits: Sendable, Equatable {
    /// Live sandboxes: the registry's, scenario sandboxes, and those of running `POST /v1/trials`.
    public var sandboxes: Int
    /// Running trials: `POST /v1/trials` in progress and scenario sandboxes not yet judged.
    public var trials: Int
    /// Open event and terminal streams.
    public var streams: Int

    public init(sandboxes: Int, trials: Int, streams: Int) {
        self.sandboxes = sandboxes
        self.trials = trials
        self.streams = streams
    }

    /// docs/daemon.md's defaults.
    public static let standard = DaemonLimits(sandboxes: 128, trials: 32, streams: 64)
}

/// The daemon's account of what it runs, against its `DaemonLimits`: a request past a bound is
/// refused with `capacity_reached` (429) before anything is made. Each unit is a `Claim`, given
/// back when the claim goes (whatever way the request ends, a stream's client leaving included).
public final class Capacity: Sendable {
    public enum Resource: String, Sendable, CaseIterable {
        case sandboxes, trials, streams

        var option: String { "--max-\(rawValue)" }
    }

    /// One unit of a resource, held while the thing it stands for lives.
    public final class Claim: Sendable {
        private let capacity: Capacity
        private let resource: Resource

        fileprivate init(_ capacity: Capacity, _ resource: Resource) {
            self.capacity = capacity
            self.resource = resource
        }

        deinit { capacity.release(resource) }
    }

    private struct State {
        var inUse: [Resource: Int] = [:]
        var refused: [Resource: Int] = [:]
    }

    public let limits: DaemonLimits
    private let state = Mutex(State())

    public init(_ limits: DaemonLimits) {
        self.limits = limits
    }

    /// No bound at all (a registry made outside a daemon, as the OpenAPI test does).
    public static var unbounded: Capacity { Capacity(DaemonLimits(sandboxes: .max, trials: .max, streams: .max)) }

    public func limit(_ resource: Resource) -> Int {
        switch resource {
        case .sandboxes: limits.sandboxes
        case .trials: limits.trials
        case .streams: limits.streams
        }
    }

    /// One unit of `resource`, or `capacity_reached` naming the bound and the flag that sets it.
    public func claim(_ resource: Resource) throws(OffswitchError) -> Claim {
        let limit = limit(resource)
        let granted = state.withLock { state -> Bool in
            guard state.inUse[resource, default: 0] < limit else {
                state.refused[resource, default: 0] += 1
                return false
            }
            state.inUse[resource, default: 0] += 1
            return true
        }
        guard granted else {
            throw OffswitchError(.capacityReached,
                                 "\(resource.rawValue): the daemon runs \(limit), its limit (offswitchd \(resource.option) \(limit)); end one, or raise the limit")
        }
        return Claim(self, resource)
    }

    /// Units of `resource` held now.
    public func inUse(_ resource: Resource) -> Int { state.withLock { $0.inUse[resource, default: 0] } }

    /// Requests refused at the bound of `resource` since the start.
    public func refused(_ resource: Resource) -> Int { state.withLock { $0.refused[resource, default: 0] } }

    fileprivate func release(_ resource: Resource) {
        state.withLock { $0.inUse[resource, default: 0] -= 1 }
    }
}
