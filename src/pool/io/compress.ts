/**
 * Block compression (ZFS's zio_compress): off, lz4, zle, gzip-1..9.
 *
 * A compressed block on disk (the "payload") is
 *
 *     [u32 LE clen][clen bytes of compressed stream][zero padding to a sector]
 *
 * The length header is what lets the payload be padded to a whole number of
 * sectors (psize) and still be decoded exactly; ZFS's lz4 and gzip wrappers
 * carry the same kind of header. compressBlock returns the payload already
 * padded, so its length is the physical size to allocate, write and
 * checksum.
 *
 * The streams per algorithm:
 *  - lz4: lz4-napi's block format (lz4_flex `compress_prepend_size`): a u32 LE
 *    uncompressed size followed by one raw LZ4 block (no frame, no checksum).
 *    decompressBlock checks that prefix equals lsize before lz4-napi sees it,
 *    because lz4-napi sizes its output buffer from it.
 *  - zle: ZFS's zero-length encoding with n = 64 (zle.ts).
 *  - gzip-N: a zlib stream (RFC 1950, as ZFS's gzip uses zlib's compress2),
 *    whose Adler-32 trailer catches some corruption on its own.
 *
 * Corrupt input never crashes and never allocates more than lsize: every
 * decoder is bounded by lsize, and lsize itself is checked against
 * MAX_BLOCK_SIZE. Corruption is reported as StorageError EIO.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { compressSync as lz4Compress, uncompressSync as lz4Uncompress } from 'lz4-napi';
import { StorageError, err } from '../../errors.js';
import { zleDecode, zleEncode } from './zle.js';
import { looksIncompressible } from './sample.js';

export { looksIncompressible };

export type GzipLevel = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;
export type Compression = 'off' | 'lz4' | 'zle' | `gzip-${GzipLevel}`;

export const COMPRESSIONS: readonly Compression[] = [
  'off', 'lz4', 'zle',
  'gzip-1', 'gzip-2', 'gzip-3', 'gzip-4', 'gzip-5', 'gzip-6', 'gzip-7', 'gzip-8', 'gzip-9',
];

/** Largest logical block we will compress or decompress (ZFS's SPA_MAXBLOCKSIZE). */
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024;

/** Bytes of the length header in front of every compressed stream. */
export const PAYLOAD_HEADER = 4;

/**
 * Parse a `compression` property value. Aliases as in ZFS: 'gzip' is gzip-6,
 * 'on' is lz4 (ZFS's default algorithm once lz4 is enabled). Throws
 * StorageError EINVAL for anything else.
 */
export function parseCompression(value: string): Compression {
  if (value === 'gzip') return 'gzip-6';
  if (value === 'on') return 'lz4';
  if ((COMPRESSIONS as readonly string[]).includes(value)) return value as Compression;
  throw err.inval(`invalid compression '${value}' (expected one of: on, ${COMPRESSIONS.join(', ')}, gzip)`);
}

/** The level of a gzip-N algorithm, or 0 if alg is not one (bad values can arrive untyped). */
function gzipLevel(alg: Compression): number {
  return alg.length === 6 && alg.startsWith('gzip-') && alg[5]! >= '1' && alg[5]! <= '9' ? alg.charCodeAt(5) - 48 : 0;
}

export interface CompressOptions {
  /**
   * Skip lz4 and gzip when a sample of the block says they cannot save 1/8
   * (looksIncompressible, ~4 us per block). lz4-napi (lz4_flex) compresses
   * random data at only ~250 MB/s (60 us per 16 KiB) against ~1-2 GB/s for
   * compressible data, so on incompressible workloads this cuts the cost of
   * compression ~10x. The price: a block of random-looking bytes that
   * repeats at a period the samples miss (not a multiple of 256) is stored
   * uncompressed though lz4 could shrink it. Default off: exact ZFS
   * behaviour.
   */
  earlyAbort?: boolean;
}


function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * Compress one logical block. Returns the payload padded with zeros to a
 * multiple of `sector`, or null when the block should be stored uncompressed:
 * alg is 'off', the data is empty, or compression would not save at least
 * 1/8 of the block's sector-rounded size (ZFS's rule, which also means a
 * block of one sector never compresses).
 *
 * All-zero blocks are the caller's business (isAllZero: store a hole).
 * opts.earlyAbort skips lz4/gzip for data that looksIncompressible().
 */
export function compressBlock(
  alg: Compression,
  data: Buffer,
  sector = 4096,
  opts: CompressOptions = {},
): Buffer | null {
  if (!Number.isInteger(sector) || sector < 1) throw err.inval(`bad sector size ${sector}`);
  if (data.length > MAX_BLOCK_SIZE) throw err.inval(`block of ${data.length} bytes exceeds ${MAX_BLOCK_SIZE}`);
  if (alg === 'off' || data.length === 0) return null;
  const lphys = roundUp(data.length, sector);
  // Largest payload worth writing: whole sectors, at most 7/8 of lphys.
  const maxPayload = Math.floor((lphys - (lphys >>> 3)) / sector) * sector;
  const maxClen = maxPayload - PAYLOAD_HEADER;
  if (maxClen < 1) return null;
  if (opts.earlyAbort && alg !== 'zle' && looksIncompressible(data)) return null;

  if (alg === 'zle') {
    // Encode straight into the payload; zle gives up as soon as it overflows.
    const out = Buffer.alloc(maxPayload);
    const clen = zleEncode(data, out.subarray(PAYLOAD_HEADER));
    if (clen < 0) return null;
    out.writeUInt32LE(clen, 0);
    return out.subarray(0, roundUp(PAYLOAD_HEADER + clen, sector));
  }

  let stream: Buffer;
  if (alg === 'lz4') stream = lz4Compress(data);
  else if (gzipLevel(alg) > 0) stream = deflateSync(data, { level: gzipLevel(alg) });
  else throw err.inval(`unknown compression '${String(alg)}'`);
  if (stream.length > maxClen) return null;
  const out = Buffer.alloc(roundUp(PAYLOAD_HEADER + stream.length, sector));
  out.writeUInt32LE(stream.length, 0);
  stream.copy(out, PAYLOAD_HEADER);
  return out;
}

function corrupt(alg: Compression, why: string, cause?: unknown): StorageError {
  return err.io(`${alg} block does not decompress: ${why}`, cause);
}

/**
 * Decompress a payload written by compressBlock back to exactly lsize bytes.
 * For 'off' the payload is the data itself (a longer payload is truncated to
 * lsize). Throws StorageError EIO if the payload is corrupt in any way the
 * decoder can see; the block checksum is what catches the rest.
 */
export function decompressBlock(alg: Compression, payload: Buffer, lsize: number): Buffer {
  if (!Number.isInteger(lsize) || lsize < 1 || lsize > MAX_BLOCK_SIZE) {
    throw err.io(`bad logical block size ${lsize}`);
  }
  if (alg === 'off') {
    if (payload.length < lsize) throw corrupt(alg, `${payload.length} bytes stored, ${lsize} expected`);
    return payload.length === lsize ? payload : payload.subarray(0, lsize);
  }
  if (payload.length < PAYLOAD_HEADER) throw corrupt(alg, 'payload shorter than its header');
  const clen = payload.readUInt32LE(0);
  if (clen === 0 || PAYLOAD_HEADER + clen > payload.length) {
    throw corrupt(alg, `header says ${clen} bytes, payload holds ${payload.length - PAYLOAD_HEADER}`);
  }
  const stream = payload.subarray(PAYLOAD_HEADER, PAYLOAD_HEADER + clen);
  let out: Buffer;
  if (alg === 'zle') {
    out = Buffer.alloc(lsize);
    if (!zleDecode(stream, out)) throw corrupt(alg, 'malformed zle stream');
    return out;
  }
  if (alg === 'lz4') {
    // lz4-napi allocates what the prefix says: check it before calling.
    if (clen < 4 || stream.readUInt32LE(0) !== lsize) throw corrupt(alg, 'size prefix does not match lsize');
    try {
      out = lz4Uncompress(stream);
    } catch (e) {
      throw corrupt(alg, (e as Error).message, e);
    }
  } else if (gzipLevel(alg) > 0) {
    try {
      // maxOutputLength bounds the allocation; a longer output throws.
      out = inflateSync(stream, { maxOutputLength: lsize });
    } catch (e) {
      throw corrupt(alg, (e as Error).message, e);
    }
  } else {
    throw err.inval(`unknown compression '${String(alg)}'`);
  }
  if (out.length !== lsize) throw corrupt(alg, `${out.length} bytes decoded, ${lsize} expected`);
  return out;
}

/**
 * Read-only zeros to compare against. Never handed out and never written, so
 * sharing it across pools is safe.
 */
const ZEROS = Buffer.alloc(64 * 1024);

/** True if every byte of buf is 0 (such blocks are stored as holes). memcmp speed. */
export function isAllZero(buf: Uint8Array): boolean {
  const len = buf.length;
  // Most blocks are not zero, and a few bytes say so for far less than compare()'s own
  // cost (its argument checks were ~2% of 4K random writes to a pool volume). Not at
  // sector- or word-aligned offsets, where formats put headers and padding: fio's buffers
  // are zero at every 1024th byte, which all 8 samples hit when they were aligned. Each
  // sample is 8 bytes: data whose every 8th byte (or 4 of every 8: 32-bit values in 64-bit
  // slots) is zero still answers here (single-byte samples all landed on the zero half of
  // such data, and 4K random writes over it paid a full compare per 16K block, 2% of them).
  if (len >= 128) {
    for (let i = 0, step = len >>> 3; i < 8; i++) {
      const p = i * step + (step >>> 1) - 3;
      if ((buf[p]! | buf[p + 1]! | buf[p + 2]! | buf[p + 3]! | buf[p + 4]! | buf[p + 5]! | buf[p + 6]! | buf[p + 7]!) !== 0) return false;
    }
  }
  for (let off = 0; off < len; off += ZEROS.length) {
    const n = Math.min(ZEROS.length, len - off);
    if (ZEROS.compare(buf, off, off + n, 0, n) !== 0) return false;
  }
  return true;
}
