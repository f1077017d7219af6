/// Small text helpers FoundationEssentials does not give (its `trimmingCharacters(in:)` wants a
/// CharacterSet, which lives in full Foundation).
extension StringProtocol {
    /// The text without the leading and trailing characters that are in `characters` (`" \t\r\n"`;
    /// `\r\n` counts as one character, as Swift reads it).
    package func trimming(_ characters: String) -> String {
        var text = Substring(self)
        while let first = text.first, characters.contains(first) { text = text.dropFirst() }
        while let last = text.last, characters.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
