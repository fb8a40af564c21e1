/**
 * Cluster compression as QEMU does it (block/qcow2-threads.c):
 * - zlib: raw deflate (no zlib header), window bits 12;
 * - zstd: one zstd frame per cluster.
 * Compressed data on disk is followed by unrelated bytes (sector padding, the
 * next compressed cluster), so decompression stops at the end of the stream.
 */
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi';
import { err } from '../../src/errors.js';
import { COMPRESSION_ZLIB } from './constants.js';

const require = createRequire(import.meta.url);
// The low-level binding tells where a zstd frame ends, so trailing bytes are not fed to the decoder.
const zstdBinding = require('zstd-napi/binding.js') as { findFrameCompressedSize(b: Uint8Array): number };

export function decompressCluster(type: number, src: Buffer, clusterSize: number): Buffer {
  let out: Buffer;
  try {
    if (type === COMPRESSION_ZLIB) {
      out = zlib.inflateRawSync(src, { windowBits: 15, finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
    } else {
      const frame = src.subarray(0, zstdBinding.findFrameCompressedSize(src));
      out = zstdDecompress(frame);
    }
  } catch (e) {
    throw err.corrupt(`qcow2: cannot decompress cluster: ${(e as Error).message}`);
  }
  if (out.length !== clusterSize) {
    throw err.corrupt(`qcow2: compressed cluster inflates to ${out.length} bytes, expected ${clusterSize}`);
  }
  return out;
}

/** Compressed form of one cluster, or null when compression does not save at least one sector. */
export function compressCluster(type: number, data: Buffer): Buffer | null {
  const out = type === COMPRESSION_ZLIB ? zlib.deflateRawSync(data, { windowBits: 12, memLevel: 9 }) : zstdCompress(data);
  return out.length <= data.length - 512 ? out : null;
}
