/**
 * Helpers the top-level vdevs share: leaf data-area geometry, I/O to one child
 * that reports failure as a value (the leaf has already counted it), range
 * checks, and the event hooks the pool engine can listen to.
 */
import { err } from '../../errors.js';
import { leafUsable } from './leaf-base.js';
import { LEAF_DATA_START, LEAF_TAIL_RESERVE, SECTOR, type Leaf, type VdevState } from './types.js';

/** Notifications from the vdev layer to the pool engine (zpool events, DTLs, statistics). */
export interface VdevEvents {
  /** A copy or column failed verification and was blamed on `leaf`. */
  onChecksumError?(leaf: Leaf, leafOffset: number, length: number): void;
  /** A write did not reach `leaf` (skipped because it is not usable, or failed) although the block was written redundantly elsewhere: the leaf needs resilvering of that range. */
  onWriteMissed?(leaf: Leaf, leafOffset: number, length: number): void;
  /** A bad or missing copy was rewritten on `leaf` (self-healing). */
  onRepair?(leaf: Leaf, leafOffset: number, length: number): void;
  /** A device changed state (FAULTED after errors, REMOVED, reopened...): activate a spare, persist the config. */
  onStateChange?(leaf: Leaf, from: VdevState, to: VdevState): void;
}

/** Bytes of the data area [LEAF_DATA_START, size - tail) of a leaf of `size` bytes, in whole sectors. */
export function leafDataBytes(size: number): number {
  const n = size - LEAF_DATA_START - LEAF_TAIL_RESERVE;
  return n > 0 ? Math.floor(n / SECTOR) * SECTOR : 0;
}

export function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Reject a top-level I/O that is misaligned or outside [0, capacity): a caller bug, not a device error. */
export function checkTopRange(what: string, offset: number, length: number, capacity: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length <= 0 ||
    offset % SECTOR !== 0 ||
    length % SECTOR !== 0 ||
    offset + length > capacity
  ) {
    throw err.inval(`${what}: I/O [${offset}, +${length}) misaligned or outside capacity ${capacity}`);
  }
}

/** Read from a child; undefined when it is not usable or the read failed (already counted by the leaf). */
export async function tryRead(leaf: Leaf, offset: number, length: number): Promise<Buffer | undefined> {
  if (!leafUsable(leaf.state)) return undefined;
  try {
    return await leaf.pread(offset, length);
  } catch {
    return undefined;
  }
}

/** Write to a child; false when it is not usable or the write failed (already counted by the leaf). */
export async function tryWrite(leaf: Leaf, offset: number, data: Buffer | Buffer[]): Promise<boolean> {
  if (!leafUsable(leaf.state)) return false;
  try {
    await leaf.pwrite(offset, data);
    return true;
  } catch {
    return false;
  }
}

/** fsync every usable child; a failed flush has been counted as a write error by the leaf. Returns the leaves that failed. */
export async function flushAll(leaves: Leaf[]): Promise<Leaf[]> {
  const failed: Leaf[] = [];
  await Promise.all(
    leaves.map(async (l) => {
      if (!leafUsable(l.state)) return;
      try {
        await l.fsync();
      } catch {
        failed.push(l);
      }
    }),
  );
  return failed;
}

/** Capacity of a top-level: the recorded asize when there is one, else what the children give. */
export function topCapacity(recorded: number | undefined, computed: number): number {
  return recorded !== undefined && recorded > 0 ? recorded : computed;
}
