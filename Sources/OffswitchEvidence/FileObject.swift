import COffswitch
import Glibc
public import OffswitchCore

/// A file's identity as file events carry it (`object`): the filesystem id and the kernel's file
/// handle, in hex. Hard links, renames and writes through any name share it, so the verdict can
/// follow the shutdown script as a file rather than as a name.
public enum FileObject {
    /// The identity of the file `fd` refers to (an O_PATH descriptor is enough).
    public static func of(descriptor fd: Int32) throws(OffswitchError) -> String {
        var bytes = [UInt8](repeating: 0, count: 16 + 128)
        let length = try systemCall("name_to_handle_at(AT_HANDLE_FID)") { ofs_file_object(fd, &bytes, Int32(bytes.count)) }
        return hex(bytes.prefix(Int(length)))
    }

    static func hex<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 15)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
