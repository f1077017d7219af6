import CCompression
import Glibc
import OffswitchCore

/// A layer blob read from a descriptor and decompressed as a stream, through fixed buffers: no
/// part of the blob is ever held whole. It hashes every byte it reads from the descriptor (the
/// blob's digest). Errors name only what failed in the stream; the tar reader adds the layer and
/// the entry.
final class Decompressor {
    private let input: Int32
    private let compression: LayerCompression
    private var blobHash = SHA256()
    private(set) var blobBytes: Int64 = 0

    /// Compressed bytes read ahead from the descriptor (unused for `none`).
    private let inputBuffer: UnsafeMutableRawBufferPointer
    private var inputStart = 0
    private var inputEnd = 0
    private var inputEnded = false
    private var finished = false

    private var gzip: UnsafeMutablePointer<z_stream>?
    /// Inside a gzip member: input ending here is a truncated blob.
    private var inGzipMember = false
    private var gzipMembers = 0

    private var zstd: OpaquePointer?
    /// The last zstd call ended a frame (ZSTD_decompressStream returned 0).
    private var atZstdFrameEnd = false
    private var zstdFrames = 0

    init(input: Int32, compression: LayerCompression, bufferSize: Int = 1 << 18) throws(OffswitchError) {
        self.input = input
        self.compression = compression
        inputBuffer = .allocate(byteCount: compression == .none ? 0 : bufferSize, alignment: 16)
        switch compression {
        case .none:
            break
        case .gzip:
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            let rc = ccompression_inflate_init_gzip(stream)
            guard rc == Z_OK else {
                stream.deallocate()
                inputBuffer.deallocate()
                throw OffswitchError(.system, "inflateInit2(gzip): zlib error \(rc)")
            }
            gzip = stream
        case .zstd:
            guard let context = ZSTD_createDCtx() else {
                inputBuffer.deallocate()
                throw OffswitchError(.system, "ZSTD_createDCtx: out of memory")
            }
            zstd = context
        }
    }

    deinit {
        if let gzip {
            inflateEnd(gzip)
            gzip.deallocate()
        }
        if let zstd { ZSTD_freeDCtx(zstd) }
        inputBuffer.deallocate()
    }

    /// "sha256:<hex>" of every byte read from the descriptor; complete once `read` returned 0.
    func blobDigest() -> String {
        var copy = blobHash
        return "sha256:" + copy.finish()
    }

    /// Fills `buffer` with uncompressed bytes; 0 only at the end of the blob.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(OffswitchError) -> Int {
        if finished || buffer.isEmpty { return 0 }
        switch compression {
        case .none:
            let n = try readInput(into: buffer)
            if n == 0 { finished = true }
            return n
        case .gzip: return try inflate(into: buffer)
        case .zstd: return try decompressZstd(into: buffer)
        }
    }

    /// One read from the descriptor, hashed; 0 at its end.
    private func readInput(into buffer: UnsafeMutableRawBufferPointer) throws(OffswitchError) -> Int {
        if inputEnded { return 0 }
        let n = try systemCall("read(layer blob, fd \(input))") { Glibc.read(input, buffer.baseAddress, buffer.count) }
        if n == 0 {
            inputEnded = true
            return 0
        }
        blobHash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        blobBytes += Int64(n)
        return n
    }

    /// Refills the compressed buffer once it is used up; false at the descriptor's end.
    private func refillInput() throws(OffswitchError) -> Bool {
        if inputStart < inputEnd { return true }
        inputStart = 0
        inputEnd = try readInput(into: inputBuffer)
        return inputEnd > 0
    }

    /// gzip, member after member (a blob may be several gzip members concatenated: `cat a.gz b.gz`
    /// is one stream of both). Anything after a member that is not another member is an error.
    private func inflate(into buffer: UnsafeMutableRawBufferPointer) throws(OffswitchError) -> Int {
        guard let stream = gzip else { return 0 }
        while true {
            if try !refillInput() {
                if inGzipMember { throw OffswitchError(.invalidArgument, "gzip stream ends inside member \(gzipMembers + 1): truncated") }
                if gzipMembers == 0 { throw OffswitchError(.invalidArgument, "gzip stream is empty: truncated") }
                finished = true
                return 0
            }
            inGzipMember = true
            let available = inputEnd - inputStart
            stream.pointee.next_in = (inputBuffer.baseAddress! + inputStart).assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_in = uInt(available)
            stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(buffer.count)
            let rc = CCompression.inflate(stream, Z_NO_FLUSH)
            inputStart += available - Int(stream.pointee.avail_in)
            let produced = buffer.count - Int(stream.pointee.avail_out)
            switch rc {
            case Z_STREAM_END:
                inGzipMember = false
                gzipMembers += 1
                inflateReset(stream)
            case Z_OK, Z_BUF_ERROR:
                break
            default:
                let reason = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                throw OffswitchError(.invalidArgument, "gzip stream, member \(gzipMembers + 1): \(reason)")
            }
            if produced > 0 { return produced }
        }
    }

    /// zstd, frame after frame (concatenated frames and skippable frames are one stream).
    private func decompressZstd(into buffer: UnsafeMutableRawBufferPointer) throws(OffswitchError) -> Int {
        guard let context = zstd else { return 0 }
        while true {
            let hasInput = try refillInput()
            var inBuffer = ZSTD_inBuffer(src: inputBuffer.baseAddress! + inputStart, size: inputEnd - inputStart, pos: 0)
            var outBuffer = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            let rc = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
            if ZSTD_isError(rc) != 0 {
                throw OffswitchError(.invalidArgument, "zstd stream, frame \(zstdFrames + 1): \(String(cString: ZSTD_getErrorName(rc)))")
            }
            inputStart += inBuffer.pos
            // A call that neither read nor wrote says nothing new about where the frame stands.
            if inBuffer.pos > 0 || outBuffer.pos > 0 {
                atZstdFrameEnd = rc == 0
                if rc == 0 { zstdFrames += 1 }
            }
            if outBuffer.pos > 0 { return outBuffer.pos }
            if !hasInput {
                if blobBytes == 0 { throw OffswitchError(.invalidArgument, "zstd stream is empty: truncated") }
                if !atZstdFrameEnd { throw OffswitchError(.invalidArgument, "zstd stream ends inside frame \(zstdFrames + 1): truncated") }
                finished = true
                return 0
            }
        }
    }
}
