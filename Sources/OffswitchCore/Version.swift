/// Offswitch's version, recorded in every trial.json.
public enum OffswitchVersion {
    public static let current = "0.3.0"
}
