@testable import OffswitchCore
import Testing

@Suite("Text helpers")
struct TextTests {
    @Test("trimming drops the given characters at both ends only, CRLF included")
    func trimming() {
        #expect(" \tBearer realm=\"x\"\r\n".trimming(" \t\r\n") == "Bearer realm=\"x\"")
        #expect("token\n".trimming(" \n\r\t") == "token")
        #expect("a b".trimming(" ") == "a b")
        #expect("   ".trimming(" ") == "")
        #expect("Max open files  1024".split(separator: "s", maxSplits: 1)[1].trimming(" \t") == "1024")
    }
}
