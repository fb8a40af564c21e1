/**
 * Space map codec: the persistent, append-only log of allocations and frees
 * of one vdev (or, with per-record vdev ids, of the whole pool), after ZFS's
 * space_map.c and its two-word "SM2" entries.
 *
 * A block holds a 16-byte header and a run of little-endian 64-bit words.
 * Offsets and lengths are stored in units of 2^shift bytes, where shift is
 * the largest power of two (up to 2^30) dividing every offset and length in
 * the block, so a 4 KiB-sector pool stores sectors and needs one word for
 * most records. The block pointer that points at a block carries its
 * checksum, so there is none here; decode still checks every field and
 * throws EFAULT on anything malformed.
 *
 * Header (16 bytes):
 *   0  u32  magic 0x50414d53 (the bytes "SMAP")
 *   4  u8   version (1)
 *   5  u8   shift: unit = 2^shift bytes
 *   6  u16  reserved, 0
 *   8  u32  number of 64-bit words that follow
 *  12  u32  number of alloc/free records they encode
 *
 * Words (bit 63 is the most significant):
 *   txg word      10 | txg (62 bits)
 *       sets the txg of the records that follow; the first record must be
 *       preceded by one. Written whenever the txg changes.
 *   one-word      0 | offset (47 bits) | op (1 bit) | run - 1 (15 bits)
 *       op 0 = alloc, 1 = free; run and offset in units. Used when the
 *       record has no vdev, run <= 2^15 units and offset < 2^47 units.
 *   two-word      11 | op (1) | vdev + 1 (24 bits, 0 = none) | run - 1 (37 bits)
 *                 offset (64 bits)
 *       everything else: long runs, far offsets, records tagged with a vdev.
 *
 * Replay order is the log order: records are applied oldest first, allocs
 * as claims and frees as frees, so an inconsistent log (a double alloc or a
 * free of free space) fails the load with EFAULT instead of silently
 * producing an allocator that could hand out a live block.
 */
import { err } from '../../errors.js';
import type { SpaceAllocator } from './allocator.js';

export type SpaceRecord = {
  op: 'alloc' | 'free';
  /** Bytes from the start of the vdev's allocatable space. */
  offset: number;
  /** Bytes, > 0. */
  length: number;
  txg: number;
  /** Top-level vdev, when one log describes several; absent otherwise. */
  vdev?: number;
};

export const SPACE_MAP_MAGIC = 0x50414d53; // "SMAP" on disk
export const SPACE_MAP_VERSION = 1;
export const SPACE_MAP_HEADER_SIZE = 16;
const MAX_SHIFT = 30;
const MAX_VDEV = 0xfffffe; // 24-bit field holds vdev + 1
const ONE_WORD_MAX_RUN = 2 ** 15;
const ONE_WORD_MAX_OFFSET = 2 ** 47; // exclusive
const TWO_WORD_MAX_RUN = 2 ** 37;
const TXG_MAX = Number.MAX_SAFE_INTEGER;
const TWO32 = 2 ** 32;

/**
 * Number of trailing zero bits of a positive safe integer, at most MAX_SHIFT.
 * Two 32-bit halves and Math.clz32: the bit-by-bit loop this replaces (a
 * floating-point remainder per bit) was a visible share of every sync
 * under random writes, two calls per record.
 */
export function ctz(n: number): number {
  const lo = n % TWO32;
  const c = lo !== 0 ? 31 - Math.clz32(lo & -lo) : 32 + (31 - Math.clz32(Math.floor(n / TWO32) & -Math.floor(n / TWO32)));
  return Math.min(c, MAX_SHIFT);
}

function checkRecord(r: SpaceRecord, i: number): void {
  const bad = (why: string) => err.inval(`space map record ${i}: ${why}`);
  if (r.op !== 'alloc' && r.op !== 'free') throw bad(`op ${String(r.op)}`);
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw bad(`offset ${r.offset}`);
  if (!Number.isSafeInteger(r.length) || r.length <= 0) throw bad(`length ${r.length}`);
  if (!Number.isSafeInteger(r.offset + r.length)) throw bad('range past 2^53');
  if (!Number.isSafeInteger(r.txg) || r.txg < 0) throw bad(`txg ${r.txg}`);
  if (r.vdev !== undefined && (!Number.isInteger(r.vdev) || r.vdev < 0 || r.vdev > MAX_VDEV)) throw bad(`vdev ${r.vdev}`);
}

/** Upper bound of the encoded size of `records`, for packing them into blocks. */
export function spaceMapBlockBound(recordCount: number): number {
  return SPACE_MAP_HEADER_SIZE + recordCount * 24; // a txg word and a two-word entry each
}

/** Encode records (in log order) as one space map block. Throws EINVAL on a malformed record. */
export function encodeSpaceMapBlock(records: SpaceRecord[]): Buffer {
  let shift = MAX_SHIFT;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    checkRecord(r, i);
    if (r.offset !== 0) shift = Math.min(shift, ctz(r.offset));
    shift = Math.min(shift, ctz(r.length));
  }
  if (records.length === 0) shift = 0;
  const unit = 2 ** shift;

  const buf = Buffer.alloc(spaceMapBlockBound(records.length));
  let w = SPACE_MAP_HEADER_SIZE;
  const put = (hi: number, lo: number) => {
    buf.writeUInt32LE(lo >>> 0, w);
    buf.writeUInt32LE(hi >>> 0, w + 4);
    w += 8;
  };
  let txg = -1;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.txg !== txg) {
      txg = r.txg;
      // 10 | txg: txg < 2^53, so its high half fits in 30 bits.
      put(0x80000000 + Math.floor(txg / TWO32), txg % TWO32);
    }
    const off = r.offset / unit;
    const run = r.length / unit;
    const op = r.op === 'free' ? 1 : 0;
    if (r.vdev === undefined && run <= ONE_WORD_MAX_RUN && off < ONE_WORD_MAX_OFFSET) {
      // 0 | offset(47) | op | run-1(15): offset bits 46..16 in hi, 15..0 in lo's top half.
      put(Math.floor(off / 65536), ((off % 65536) * 65536 + op * 32768 + (run - 1)) >>> 0);
    } else {
      if (run > TWO_WORD_MAX_RUN) throw err.inval(`space map record ${i}: run of ${run} units is too long`);
      const v = r.vdev === undefined ? 0 : r.vdev + 1;
      const rm1 = run - 1;
      // 11 | op | vdev+1 (24) | run-1 (37): in hi, bits 31..30 = 11, 29 = op, 28..5 = vdev+1, 4..0 = run-1 bits 36..32.
      put(0xc0000000 + op * 0x20000000 + v * 32 + Math.floor(rm1 / TWO32), rm1 % TWO32);
      put(Math.floor(off / TWO32), off % TWO32);
    }
  }
  buf.writeUInt32LE(SPACE_MAP_MAGIC, 0);
  buf.writeUInt8(SPACE_MAP_VERSION, 4);
  buf.writeUInt8(shift, 5);
  buf.writeUInt16LE(0, 6);
  buf.writeUInt32LE((w - SPACE_MAP_HEADER_SIZE) / 8, 8);
  buf.writeUInt32LE(records.length, 12);
  return buf.subarray(0, w);
}

/**
 * Decode one block. Trailing bytes after the words are ignored (a block may
 * be padded to its allocated size). Throws EFAULT on any inconsistency.
 */
export function decodeSpaceMapBlock(buf: Buffer): SpaceRecord[] {
  const bad = (why: string) => err.corrupt(`space map block: ${why}`);
  if (buf.length < SPACE_MAP_HEADER_SIZE) throw bad(`${buf.length} bytes is shorter than the header`);
  if (buf.readUInt32LE(0) !== SPACE_MAP_MAGIC) throw bad('bad magic');
  const version = buf.readUInt8(4);
  if (version !== SPACE_MAP_VERSION) throw bad(`unsupported version ${version}`);
  const shift = buf.readUInt8(5);
  if (shift > MAX_SHIFT) throw bad(`unit shift ${shift} out of range`);
  if (buf.readUInt16LE(6) !== 0) throw bad('reserved field is not zero');
  const words = buf.readUInt32LE(8);
  const count = buf.readUInt32LE(12);
  if (SPACE_MAP_HEADER_SIZE + words * 8 > buf.length) throw bad(`${words} words do not fit in ${buf.length} bytes`);
  const unit = 2 ** shift;

  const out: SpaceRecord[] = [];
  let txg = -1;
  const end = SPACE_MAP_HEADER_SIZE + words * 8;
  for (let p = SPACE_MAP_HEADER_SIZE; p < end; p += 8) {
    const lo = buf.readUInt32LE(p);
    const hi = buf.readUInt32LE(p + 4);
    const tag = hi >>> 30;
    if (tag === 2) {
      txg = (hi & 0x3fffffff) * TWO32 + lo;
      if (txg > TXG_MAX) throw bad(`txg at byte ${p} exceeds 2^53`);
      continue;
    }
    if (txg < 0) throw bad('record before any txg word');
    let off: number;
    let run: number;
    let op: number;
    let vdev: number | undefined;
    if (tag < 2) {
      off = hi * 65536 + (lo >>> 16);
      op = (lo >>> 15) & 1;
      run = (lo & 0x7fff) + 1;
    } else {
      if (p + 16 > end) throw bad('two-word entry cut short');
      op = (hi >>> 29) & 1;
      const v = (hi >>> 5) & 0xffffff;
      vdev = v === 0 ? undefined : v - 1;
      run = (hi & 0x1f) * TWO32 + lo + 1;
      p += 8;
      const olo = buf.readUInt32LE(p);
      const ohi = buf.readUInt32LE(p + 4);
      off = ohi * TWO32 + olo;
    }
    const offset = off * unit;
    const length = run * unit;
    if (!Number.isSafeInteger(offset + length)) throw bad(`record at byte ${p} lies beyond 2^53`);
    const rec: SpaceRecord = { op: op === 1 ? 'free' : 'alloc', offset, length, txg };
    if (vdev !== undefined) rec.vdev = vdev;
    out.push(rec);
  }
  if (out.length !== count) throw bad(`header says ${count} records, found ${out.length}`);
  return out;
}

/**
 * Replay blocks (oldest first) into allocators: allocs are claimed, frees
 * freed, in log order. With one allocator every record goes to it (a record
 * tagged with vdev must then say 0 or nothing); with an array records are
 * routed by their vdev (absent = 0). Any inconsistency throws EFAULT.
 */
export function replaySpaceMap(
  alloc: SpaceAllocator | readonly SpaceAllocator[],
  blocks: Iterable<SpaceRecord[]>,
): void {
  const targets: readonly SpaceAllocator[] = Array.isArray(alloc) ? alloc : [alloc as SpaceAllocator];
  for (const block of blocks) {
    for (const r of block) {
      const a = targets[r.vdev ?? 0];
      if (!a) throw err.corrupt(`space map record names vdev ${r.vdev}, which does not exist`);
      if (r.offset + r.length > a.capacity || r.offset % a.sector !== 0 || r.length % a.sector !== 0) {
        throw err.corrupt(
          `space map record ${r.op} [${r.offset}, +${r.length}) at txg ${r.txg} does not fit the vdev (capacity ${a.capacity}, sector ${a.sector})`,
        );
      }
      try {
        if (r.op === 'alloc') a.claim(r.offset, r.length);
        else a.free(r.offset, r.length);
      } catch (e) {
        throw err.corrupt(`space map replay: ${r.op} [${r.offset}, +${r.length}) at txg ${r.txg}: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * The condensed log: one alloc record per allocated extent, tagged with txg
 * (and vdev if given). Replaying it into a fresh allocator reproduces the
 * allocator's allocated space exactly. Rewrite the log this way when it has
 * grown well past its condensed size (see shouldCondense).
 */
export function condense(alloc: SpaceAllocator, txg: number, vdev?: number): SpaceRecord[] {
  const out: SpaceRecord[] = [];
  for (const [offset, length] of alloc.allocatedExtents()) {
    const r: SpaceRecord = { op: 'alloc', offset, length, txg };
    if (vdev !== undefined) r.vdev = vdev;
    out.push(r);
  }
  return out;
}

/**
 * ZFS condenses a space map when it is much longer than the in-core tree
 * it describes (metaslab_should_condense, zfs_condense_pct = 200%). The
 * allocated extents of a vdev number at most free segments + 1.
 */
export function shouldCondense(logRecords: number, alloc: SpaceAllocator): boolean {
  return logRecords > 2 * (alloc.freeSegmentCount() + 1) && logRecords > 64;
}
