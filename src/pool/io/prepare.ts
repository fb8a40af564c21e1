/**
 * Preparing a block for the disk (the CPU half of a ZIO write): zero
 * detection, compression, padding to a sector, checksum. Pure: it runs on
 * the main thread or, for large batches, in the prepare workers
 * (prepare-workers.ts), which must produce exactly the same bytes.
 */
import { CHECKSUM_IDS, COMPRESS_IDS, type ChecksumId, type CompressId } from '../blkptr.js';
import { computeChecksum } from './checksum.js';
import { fletcher4Sampled } from './fletcher4.js';
import { compressBlock, isAllZero } from './compress.js';
import { SECTOR } from '../vdev/types.js';

export interface Prepared {
  /** The physical block: what is written and checksummed (padded to a sector). */
  phys: Buffer;
  psize: number;
  comp: CompressId;
  cksum: Buffer;
}

export function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * Prepare one logical block; null for a hole (all zero and not `noHole`).
 * Early abort: a cheap entropy sample skips lz4/gzip on data that cannot
 * shrink by 1/8 (random or already-compressed guest data), which would
 * otherwise dominate the write path.
 */
export function prepareBlock(data: Buffer, comp: CompressId, cksum: ChecksumId, noHole: boolean | undefined): Prepared | null {
  if (!noHole && isAllZero(data)) return null;
  // The common case of guest data that will not compress, in one pass over a copy in wasm
  // memory (fletcher4Sampled): the sample, then, if it says incompressible, the checksum of the
  // block as it will be stored. Same bytes and checksum as the path below takes for it.
  let sampled: Buffer | null | undefined;
  // (lz4 and gzip: the algorithms compressBlock's early abort applies to.)
  if (comp !== 'off' && comp !== 'zle' && cksum === 'fletcher4' && data.length % SECTOR === 0) {
    sampled = fletcher4Sampled(data);
    if (sampled) return { phys: data, psize: data.length, comp: 'off', cksum: sampled };
  }
  // sampled === null: the sample said it may compress; compressBlock need not sample again.
  const packed = comp === 'off' ? null : compressBlock(comp, data, SECTOR, { earlyAbort: sampled === undefined });
  let phys: Buffer;
  if (packed) {
    const psize = roundUp(packed.length, SECTOR);
    phys = packed.length === psize ? packed : Buffer.concat([packed, Buffer.alloc(psize - packed.length)]);
  } else {
    comp = 'off';
    const psize = roundUp(data.length, SECTOR);
    phys = psize === data.length ? data : Buffer.concat([data, Buffer.alloc(psize - data.length)]);
  }
  return { phys, psize: phys.length, comp, cksum: computeChecksum(cksum, phys) };
}

/*
 * Batches prepared off the main thread share one SharedArrayBuffer, an
 * "arena", between the pool and a worker (prepare-workers.ts):
 *
 *   [META: 8 int32 per block][CKSUM: 32 bytes per block][INPUT][OUTPUT]
 *
 * META per block, written by the pool: input offset, length, compression
 * index (COMPRESS_IDS), checksum index (CHECKSUM_IDS), noHole; written back
 * by prepareInArena: the compression used, what became of the block (HOLE,
 * AS_IS: the physical block is the logical data itself, OUT: it is
 * OUTPUT[outOff, outOff + outLen)), and the checksum in CKSUM.
 */
/** Most blocks in one arena. */
export const ARENA_BLOCKS = 256;
/** Most input bytes in one arena. */
export const ARENA_INPUT = 2 * 1024 * 1024;
const META_INTS = 8;
const META_BYTES = ARENA_BLOCKS * META_INTS * 4;
const CKSUM_BASE = META_BYTES;
const INPUT_BASE = CKSUM_BASE + ARENA_BLOCKS * 32;
const OUTPUT_BASE = INPUT_BASE + ARENA_INPUT;
/** Output never exceeds the input rounded up to sectors, block by block. */
export const ARENA_BYTES = OUTPUT_BASE + ARENA_INPUT + ARENA_BLOCKS * SECTOR;

export const enum Outcome {
  Hole = 0,
  AsIs = 1,
  Out = 2,
}

/** Fill an arena's META and INPUT with blocks (the pool's side). */
export function fillArena(sab: SharedArrayBuffer, blocks: readonly { data: Buffer; comp: CompressId; cksum: ChecksumId; noHole?: boolean }[]): void {
  if (blocks.length > ARENA_BLOCKS) throw new RangeError(`arena holds at most ${ARENA_BLOCKS} blocks`);
  const meta = new Int32Array(sab, 0, ARENA_BLOCKS * META_INTS);
  const input = new Uint8Array(sab, INPUT_BASE, ARENA_INPUT);
  let at = 0;
  blocks.forEach((b, i) => {
    if (at + b.data.length > ARENA_INPUT) throw new RangeError('arena input overflow');
    input.set(b.data, at);
    const m = i * META_INTS;
    meta[m] = at;
    meta[m + 1] = b.data.length;
    meta[m + 2] = COMPRESS_IDS.indexOf(b.comp);
    meta[m + 3] = CHECKSUM_IDS.indexOf(b.cksum);
    meta[m + 4] = b.noHole ? 1 : 0;
    at += b.data.length;
  });
}

/** Prepare the first n blocks of an arena in place (the worker's side; also usable inline). */
export function prepareInArena(sab: SharedArrayBuffer, n: number): void {
  const meta = new Int32Array(sab, 0, ARENA_BLOCKS * META_INTS);
  const cks = new Uint8Array(sab, CKSUM_BASE, ARENA_BLOCKS * 32);
  const output = new Uint8Array(sab, OUTPUT_BASE, ARENA_INPUT + ARENA_BLOCKS * SECTOR);
  let out = 0;
  for (let i = 0; i < n; i++) {
    const m = i * META_INTS;
    const data = Buffer.from(sab, INPUT_BASE + meta[m]!, meta[m + 1]!);
    const p = prepareBlock(data, COMPRESS_IDS[meta[m + 2]!]!, CHECKSUM_IDS[meta[m + 3]!]!, meta[m + 4] === 1);
    if (!p) {
      meta[m + 5] = Outcome.Hole;
      continue;
    }
    meta[m + 2] = COMPRESS_IDS.indexOf(p.comp);
    cks.set(p.cksum, i * 32);
    if (p.phys === data) {
      meta[m + 5] = Outcome.AsIs;
    } else {
      output.set(p.phys, out);
      meta[m + 5] = Outcome.Out;
      meta[m + 6] = out;
      meta[m + 7] = p.psize;
      out += p.psize;
    }
  }
}

/**
 * Read an arena's results (the pool's side). Physical blocks of outcome Out
 * are views into the arena: it must not be reused until they are written.
 * `datas[i]` is block i's own buffer (returned for AsIs).
 */
export function readArena(sab: SharedArrayBuffer, datas: readonly Buffer[]): (Prepared | null)[] {
  const meta = new Int32Array(sab, 0, ARENA_BLOCKS * META_INTS);
  const res: (Prepared | null)[] = new Array(datas.length);
  for (let i = 0; i < datas.length; i++) {
    const m = i * META_INTS;
    const kind = meta[m + 5] as Outcome;
    if (kind === Outcome.Hole) {
      res[i] = null;
      continue;
    }
    const phys = kind === Outcome.AsIs ? datas[i]! : Buffer.from(sab, OUTPUT_BASE + meta[m + 6]!, meta[m + 7]!);
    // The checksum outlives the arena (block pointers keep it): copy it out.
    const cksum = Buffer.allocUnsafe(32);
    cksum.set(new Uint8Array(sab, CKSUM_BASE + i * 32, 32));
    res[i] = { phys, psize: phys.length, comp: COMPRESS_IDS[meta[m + 2]!]!, cksum };
  }
  return res;
}
