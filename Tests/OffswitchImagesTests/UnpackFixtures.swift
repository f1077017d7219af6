import Glibc
import OffswitchCore
import OffswitchImages

/// Unpacks the blob at `file` into `directory` (created empty), the compression sniffed.
func unpack(
    _ file: String, into directory: String, limits: UnpackLimits = .standard, label: String = "image test:1 layer 1"
) throws(OffswitchError) -> UnpackResult {
    if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
    let fd = try systemCall("open(\(file))") { open(file, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    let compression = try LayerCompression.sniff(fd)
    return try LayerUnpacker.unpack(from: fd, compression: compression, into: directory, limits: limits, label: label)
}

/// The error unpacking `bytes` (a plain tar) gives, nil when it unpacks.
func refusal(_ bytes: [UInt8], in scratch: Scratch, limits: UnpackLimits = .standard) throws -> OffswitchError? {
    let file = try scratch.write("layer.tar", bytes)
    do {
        _ = try unpack(file, into: scratch.path + "/layer", limits: limits)
        return nil
    } catch {
        return error
    }
}
