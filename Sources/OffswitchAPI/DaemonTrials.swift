import Glibc
public import OffswitchCore

/// The client side of `POST /v1/trials`: offswitchd runs a whole trial and the client fetches its
/// files into a local trial directory, where they read as if the trial had run here.
public enum DaemonTrials {
    public struct Reply: Sendable {
        public var id: String
        public var durationMilliseconds: UInt64?
    }

    /// Runs one trial in offswitchd and fetches its files into `directory` (created, or an
    /// existing empty one).
    public static func run(_ client: DaemonClient, _ body: CreateTrialBody, into directory: String) throws(OffswitchError) -> Reply {
        let reply = try client.call("POST", "/v1/trials", body: try APIJSON.requestBody(body))
        let document = try APIJSON.reply(TrialReplyDocument.self, from: reply, what: "a trial reply")
        let id = document.id
        guard !id.isEmpty else { throw OffswitchError(.protocolError, "offswitchd's trial reply has no id") }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
        guard listDirectory(directory).isEmpty else {
            throw OffswitchError(.invalidArgument, "\(directory) exists and is not empty; give --out a new directory")
        }
        for name in CreateTrialBody.files {
            try writeWholeFile(try client.call("GET", "/v1/trials/\(id)/files/\(name)"), to: directory + "/" + name)
        }
        return Reply(id: id, durationMilliseconds: document.duration_ms)
    }
}
