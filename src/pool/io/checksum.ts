/**
 * Block checksums. Every block pointer carries the checksum of the physical
 * block it points to (what is on disk: compressed and padded), so a read
 * verifies each block against its parent, up to the uberblock.
 *
 * Both algorithms produce 32 bytes, ZFS's zio_cksum_t size, so a block
 * pointer has one fixed-size checksum field whatever the type:
 *  - fletcher4: four little-endian uint64 (see fletcher4.ts); the default.
 *  - sha256: the digest, big-endian as SHA-256 defines it.
 */
import { createHash } from 'node:crypto';
import { err } from '../../errors.js';
import { fletcher4 } from './fletcher4.js';

export type ChecksumType = 'fletcher4' | 'sha256';

export const CHECKSUM_TYPES: readonly ChecksumType[] = ['fletcher4', 'sha256'];

/** Size of every checksum, in bytes. */
export const CHECKSUM_SIZE = 32;

/**
 * Parse a `checksum` property value. 'on' means the default (fletcher4), as
 * in ZFS. Throws StorageError EINVAL for anything else.
 */
export function parseChecksum(value: string): ChecksumType {
  if (value === 'on') return 'fletcher4';
  if ((CHECKSUM_TYPES as readonly string[]).includes(value)) return value as ChecksumType;
  throw err.inval(`invalid checksum '${value}' (expected one of: on, ${CHECKSUM_TYPES.join(', ')})`);
}

/**
 * The checksum of data: always a fresh 32-byte Buffer.
 * fletcher4 needs a length that is a multiple of 4 (blocks are multiples of
 * 512); other lengths throw StorageError EINVAL.
 */
export function computeChecksum(type: ChecksumType, data: Uint8Array): Buffer {
  switch (type) {
    case 'fletcher4':
      if (data.length % 4 !== 0) throw err.inval(`fletcher4 needs a multiple of 4 bytes, got ${data.length}`);
      return fletcher4(data);
    case 'sha256':
      return createHash('sha256').update(data).digest();
    default:
      throw err.inval(`unknown checksum type '${String(type)}'`);
  }
}

/**
 * Whether two checksums are equal. Not constant-time: checksums here detect
 * corruption, they are not secrets or MACs.
 */
export function checksumEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** Verify data against an expected checksum; false on mismatch. */
export function verifyChecksum(type: ChecksumType, data: Uint8Array, expected: Uint8Array): boolean {
  return checksumEquals(computeChecksum(type, data), expected);
}
