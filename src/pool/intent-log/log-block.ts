/**
 * Intent-log blocks: the on-disk unit of the ZIL chain.
 *
 *   0   u64 magic "STRAZIL2"        8  u64 pool guid
 *  16   u64 sequence number         24 u32 next vdev, u32 next asize
 *  32   u64 next offset             40 u32 bytes of records, u32 record count
 *  48   u64 chain id (random per chain: a block of an earlier chain never matches)
 *  56   u32 flags (bit 0: the last block of its commit), 4 bytes reserved
 *  64   records
 * end-32  sha256 of [0, 64 + bytes of records)
 *
 * A block is valid only if the magic, pool guid and the expected sequence
 * number match and its checksum verifies: replay walks the chain from the
 * MOS root's head until the first block that is not valid (an unwritten,
 * torn or reused block ends the chain; a stale block from an earlier chain
 * has an older sequence number).
 *
 * Commits are atomic: replay applies the records of a block only once it
 * has reached a block that ends their commit (flag bit 0); the blocks of a
 * commit cut short by a crash (never acknowledged) are dropped whole, so a
 * write whose records straddle two blocks is never half replayed. Blocks
 * with the version-1 magic "STRAZIL1" (no flags) each count as a commit.
 *
 * Record: u8 op (1 write, 2 zero), u8 pad, u16 pad, u32 dataset id,
 * u64 txg, u64 offset, u32 length, u32 pad, then `length` data bytes for
 * writes. 32-byte record header.
 */
import { createHash } from 'node:crypto';
import type { Dva } from '../blkptr.js';

const MAGIC_V1 = 0x314c495a41525453n; // "STRAZIL1": every block ends a commit
const MAGIC = 0x324c495a41525453n; // "STRAZIL2": flags at 56
const FLAG_COMMIT_END = 1;
export const LOG_HEADER = 64;
export const LOG_TRAILER = 32;
export const REC_HEADER = 32;

export type LogOp = 'write' | 'zero';

export interface LogRecord {
  op: LogOp;
  dataset: number;
  txg: number;
  offset: number;
  length: number;
  data?: Buffer;
}

export interface LogBlock {
  chain: bigint;
  seq: number;
  next: Dva;
  records: LogRecord[];
  /** The last block of its commit (replay applies a commit only once it is whole). */
  commitEnd: boolean;
}

export function recordSize(r: LogRecord): number {
  return REC_HEADER + (r.op === 'write' ? r.length : 0);
}

export function encodeLogBlock(size: number, poolGuid: bigint, b: LogBlock): Buffer {
  const buf = Buffer.alloc(size);
  buf.writeBigUInt64LE(MAGIC, 0);
  buf.writeBigUInt64LE(poolGuid, 8);
  buf.writeBigUInt64LE(BigInt(b.seq), 16);
  buf.writeUInt32LE(b.next.vdev, 24);
  buf.writeUInt32LE(b.next.asize, 28);
  buf.writeBigUInt64LE(BigInt(b.next.offset), 32);
  buf.writeBigUInt64LE(b.chain, 48);
  buf.writeUInt32LE(b.commitEnd ? FLAG_COMMIT_END : 0, 56);
  let at = LOG_HEADER;
  for (const r of b.records) {
    buf.writeUInt8(r.op === 'write' ? 1 : 2, at);
    buf.writeUInt32LE(r.dataset, at + 4);
    buf.writeBigUInt64LE(BigInt(r.txg), at + 8);
    buf.writeBigUInt64LE(BigInt(r.offset), at + 16);
    buf.writeUInt32LE(r.length, at + 24);
    at += REC_HEADER;
    if (r.op === 'write') {
      r.data!.copy(buf, at, 0, r.length);
      at += r.length;
    }
  }
  if (at + LOG_TRAILER > size) throw new Error('log block overflow');
  buf.writeUInt32LE(at - LOG_HEADER, 40);
  buf.writeUInt32LE(b.records.length, 44);
  createHash('sha256').update(buf.subarray(0, at)).digest().copy(buf, size - LOG_TRAILER);
  return buf;
}

/** Decode a log block, or null if it is not the valid block `seq` of this pool's chain. */
export function decodeLogBlock(buf: Buffer, poolGuid: bigint, chain: bigint, seq: number): LogBlock | null {
  if (buf.length < LOG_HEADER + LOG_TRAILER) return null;
  const magic = buf.readBigUInt64LE(0);
  if ((magic !== MAGIC && magic !== MAGIC_V1) || buf.readBigUInt64LE(8) !== poolGuid) return null;
  if (buf.readBigUInt64LE(48) !== chain) return null;
  if (Number(buf.readBigUInt64LE(16)) !== seq) return null;
  const used = buf.readUInt32LE(40);
  if (used > buf.length - LOG_HEADER - LOG_TRAILER) return null;
  const sum = createHash('sha256').update(buf.subarray(0, LOG_HEADER + used)).digest();
  if (!sum.equals(buf.subarray(buf.length - LOG_TRAILER))) return null;
  const count = buf.readUInt32LE(44);
  const records: LogRecord[] = [];
  let at = LOG_HEADER;
  const end = LOG_HEADER + used;
  for (let i = 0; i < count; i++) {
    if (at + REC_HEADER > end) return null;
    const opc = buf.readUInt8(at);
    const r: LogRecord = {
      op: opc === 1 ? 'write' : 'zero',
      dataset: buf.readUInt32LE(at + 4),
      txg: Number(buf.readBigUInt64LE(at + 8)),
      offset: Number(buf.readBigUInt64LE(at + 16)),
      length: buf.readUInt32LE(at + 24),
    };
    if (opc !== 1 && opc !== 2) return null;
    at += REC_HEADER;
    if (r.op === 'write') {
      if (at + r.length > end) return null;
      r.data = Buffer.from(buf.subarray(at, at + r.length));
      at += r.length;
    }
    records.push(r);
  }
  return {
    chain,
    seq,
    next: { vdev: buf.readUInt32LE(24), asize: buf.readUInt32LE(28), offset: Number(buf.readBigUInt64LE(32)) },
    records,
    commitEnd: magic === MAGIC_V1 || (buf.readUInt32LE(56) & FLAG_COMMIT_END) !== 0,
  };
}
