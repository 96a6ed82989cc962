import { promisify } from "node:util";
import { constants as zlibConstants, gzip as gzipCallback, type ZlibOptions } from "node:zlib";

const gzipWith = promisify<Buffer | string, ZlibOptions, Buffer>(gzipCallback);

/**
 * Gzip at the fastest level, for the archive blobs and the Logs Ingestion calls: on synthetic
 * audit JSON it compressed at 142-191 MB/s against 71-91 MB/s at the default level 6, for
 * 7.2x instead of 8.2-8.3x smaller output. Output in 256 KB pieces instead of zlib's 16 KB:
 * a call's body then comes back in one piece or two, not dozens, each a trip through the
 * event loop (200 gzips of a 785 KB body: 148-151 ms of event-loop time against 184-333 ms).
 */
export function fastGzip(data: Buffer | string): Promise<Buffer> {
  return gzipWith(data, { level: zlibConstants.Z_BEST_SPEED, chunkSize: GZIP_CHUNK_BYTES });
}

const GZIP_CHUNK_BYTES = 256 * 1024;
