#ifndef CCOMPRESSION_SHIM_H
#define CCOMPRESSION_SHIM_H

// zlib and zstd, for image layers (gzip and zstd blobs).
//
// Swift does not import function-like macros: zlib's inflateInit2 is one (it passes ZLIB_VERSION
// and sizeof(z_stream) to inflateInit2_), so this header re-exposes it as an inline function.

#include <zlib.h>
#include <zstd.h>

/// inflateInit2 for gzip only (windowBits 16 + 15: a gzip header and trailer, no raw or zlib data).
static inline int ccompression_inflate_init_gzip(z_stream *_Nonnull stream) {
    return inflateInit2(stream, 16 + MAX_WBITS);
}

#endif
