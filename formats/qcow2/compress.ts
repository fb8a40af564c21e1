/**
 * Cluster compression as QEMU does it (block/qcow2-threads.c):
 * - zlib: raw deflate (no zlib header), window bits 12;
 * - zstd: one zstd frame per cluster.
 * Compressed data on disk is followed by unrelated bytes (sector padding, the
 * next compressed cluster), so decompression stops at the end of the stream.
 * zstd is loaded only for images that use it (it is a native module), and
 * node:zlib only when a cluster is first compressed or decompressed: most
 * images have no compressed cluster, and loading zlib is a visible part of
 * a short command's start-up.
 */
import { createRequire } from 'node:module';
import type * as Zlib from 'node:zlib';
import { err } from '../../src/errors.js';
import { COMPRESSION_ZLIB } from './constants.js';

const require = createRequire(import.meta.url);
let zlibModule: typeof Zlib | undefined;
const zlib = (): typeof Zlib => (zlibModule ??= require('node:zlib') as typeof Zlib);

export interface ClusterCodec {
  /** Compressed form of one cluster, or null when compression does not save at least one sector. */
  compress(data: Buffer): Buffer | null;
  decompress(src: Buffer, clusterSize: number): Buffer;
}

function checked(out: Buffer, clusterSize: number): Buffer {
  if (out.length !== clusterSize) {
    throw err.corrupt(`qcow2: compressed cluster inflates to ${out.length} bytes, expected ${clusterSize}`);
  }
  return out;
}

function worthIt(out: Buffer, data: Buffer): Buffer | null {
  return out.length <= data.length - 512 ? out : null;
}

const zlibCodec: ClusterCodec = {
  compress: (data) => worthIt(zlib().deflateRawSync(data, { windowBits: 12, memLevel: 9 }), data),
  decompress(src, clusterSize) {
    try {
      const z = zlib();
      return checked(z.inflateRawSync(src, { windowBits: 15, finishFlush: z.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize }), clusterSize);
    } catch (e) {
      throw err.corrupt(`qcow2: cannot decompress cluster: ${(e as Error).message}`);
    }
  },
};

export async function loadCodec(type: number): Promise<ClusterCodec> {
  if (type === COMPRESSION_ZLIB) return zlibCodec;
  const zstd = await import('zstd-napi');
  // The low-level binding tells where a zstd frame ends, so trailing bytes are not fed to the decoder.
  const binding = require('zstd-napi/binding.js') as { findFrameCompressedSize(b: Uint8Array): number };
  return {
    compress: (data) => worthIt(zstd.compress(data), data),
    decompress(src, clusterSize) {
      try {
        return checked(zstd.decompress(src.subarray(0, binding.findFrameCompressedSize(src))), clusterSize);
      } catch (e) {
        if ((e as { code?: string }).code === 'EFAULT') throw e;
        throw err.corrupt(`qcow2: cannot decompress cluster: ${(e as Error).message}`);
      }
    },
  };
}
