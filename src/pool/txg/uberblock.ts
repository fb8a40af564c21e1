/**
 * Uberblocks: the root of everything committed. One 1 KiB slot per txg in
 * a ring of 128 slots inside every label (slot = txg % 128).
 *
 *   0  u64 magic 0x00bab10c5741a7a5   8  u32 version   12 u32 reserved
 *  16  u64 txg    24 u64 pool guid (low 64 bits)   32 u64 timestamp (ms)
 *  40  128 bytes root block pointer (the MOS root block)
 * 168  u64 guid sum of all leaves (detects a mismatched device set)
 * 992  32 bytes sha256 of bytes [0, 992)
 *
 * Ordering rule (enforced in txg/sync.ts): an uberblock is written only after
 * every block it reaches is durable (all vdevs flushed), and the sync is
 * complete only after the uberblock itself is flushed. Import takes the
 * newest slot whose checksum verifies, so a torn uberblock write falls back
 * to the previous txg.
 */
import { createHash } from 'node:crypto';
import { decodeBp, encodeBp, type BlockPointer } from '../blkptr.js';

export const UB_MAGIC = 0x00bab10c5741a7a5n;
export const UB_SLOT = 1024;
export const UB_RING = 128;
export const FORMAT_VERSION = 1;

export interface Uberblock {
  version: number;
  txg: number;
  poolGuid: bigint;
  timestamp: number;
  rootBp: BlockPointer;
  guidSum: bigint;
}

export function encodeUberblock(ub: Uberblock): Buffer {
  const b = Buffer.alloc(UB_SLOT);
  b.writeBigUInt64LE(UB_MAGIC, 0);
  b.writeUInt32LE(ub.version, 8);
  b.writeBigUInt64LE(BigInt(ub.txg), 16);
  b.writeBigUInt64LE(ub.poolGuid & 0xffffffffffffffffn, 24);
  b.writeBigUInt64LE(BigInt(ub.timestamp), 32);
  encodeBp(ub.rootBp, b, 40);
  b.writeBigUInt64LE(ub.guidSum & 0xffffffffffffffffn, 168);
  createHash('sha256').update(b.subarray(0, 992)).digest().copy(b, 992);
  return b;
}

/** Decode a slot; null when empty, torn or corrupt. */
export function decodeUberblock(b: Buffer): Uberblock | null {
  if (b.length < UB_SLOT) return null;
  if (b.readBigUInt64LE(0) !== UB_MAGIC) return null;
  const sum = createHash('sha256').update(b.subarray(0, 992)).digest();
  if (!sum.equals(b.subarray(992, 1024))) return null;
  try {
    const rootBp = decodeBp(b, 40);
    if (!rootBp) return null;
    return {
      version: b.readUInt32LE(8),
      txg: Number(b.readBigUInt64LE(16)),
      poolGuid: b.readBigUInt64LE(24),
      timestamp: Number(b.readBigUInt64LE(32)),
      rootBp,
      guidSum: b.readBigUInt64LE(168),
    };
  } catch {
    return null;
  }
}
