/**
 * SpaceAllocator: the free-space manager of one top-level vdev (ZFS's
 * metaslab group and its metaslabs).
 *
 * The vdev's allocatable space is split into metaslabs of 2^metaslabShift
 * bytes (the last one may be short). Each metaslab keeps a RangeTree of its
 * FREE segments in sectors. The allocator prefers the metaslab it used last
 * and, when that one has no run big enough, moves to the emptiest metaslab
 * that has one. Inside a metaslab allocation is first-fit from a cursor
 * (ZFS's metaslab_df): each allocation starts where the previous one ended
 * if that space is free, else at the next free run that fits, wrapping to
 * the metaslab start. Blocks are therefore laid down in the order they are
 * allocated, so a sequential write stream is sequential on disk.
 *
 * Unlike metaslab_df we keep ONE cursor per metaslab, not one per alignment
 * class (ms_lbas[]): with compression a volume's 16K blocks come out as 4K,
 * 8K, 12K or 16K, and per-class cursors would deal one logical stream into
 * several interleaved regions, which is what sequential reads pay for.
 * Nor is there metaslab_df's size-sorted tree: our subtree max/min
 * augmentation answers both of its questions in the one tree.
 *
 * Like metaslab_df, a metaslab that runs low (less than 30% free) fills
 * holes before it cuts into runs: a block smaller than `keepRun` goes to
 * the first free segment after the cursor that is shorter than keepRun,
 * if there is one. Copy-on-write overwrites free blocks all over the
 * pool; first-fit alone then spends every long run on small blocks while
 * the small holes pile up, and a nearly full pool ends with free space
 * but no run for a 128K indirect block (see the metadata reserve in
 * io/allocate.ts). Fresh and roomy metaslabs keep plain first-fit, so
 * sequential writes stay sequential.
 *
 * The same rule applies across the vdev once the vdev as a whole runs low:
 * a small block goes to a hole in any metaslab before it cuts a run in the
 * active one, and to a hole of exactly its size first (best fit for the
 * common case: an overwrite's new block takes the hole an earlier
 * overwrite's old block left). Per metaslab alone was not enough: random
 * overwrites of a thick volume on a pool 91% full took new blocks from the
 * long runs of the emptiest (still roomy) metaslab while the holes piled up
 * in the others, and within ~100 MiB of 4K writes there was no 128K run
 * left for the metadata reserve (ENOSPC, with 118 MB free). With holes
 * first, vdev-wide, and exact fits first, the same workload ran 150 s
 * (1581 MiB) without an error, and at 83% full ran 1.8-2x as fast (fewer
 * writers waiting on txgs for reserve runs; src/pool/space/README.md).
 * Nothing here stands in for ZFS's gang blocks (a block split over up to
 * three smaller runs): a pool can still end with free space and no run.
 *
 * Invariants:
 *  - A byte is either in exactly one free segment or allocated; free
 *    segments are disjoint and maximally merged within their metaslab.
 *    allocatedBytes() + freeBytes() === capacity at all times.
 *  - alloc() never returns a range any byte of which is allocated.
 *  - free() and claim() check the whole request before changing anything:
 *    a double free, a free of never-allocated space, or a claim of space
 *    already allocated throws StorageError EFAULT and leaves state intact.
 *  - Frees take effect immediately. Deferring frees until no committed
 *    uberblock can reach the block (TXG_DEFER) is the caller's job.
 *
 * Units: the public API speaks bytes (offsets relative to the start of the
 * vdev's allocatable region); internally everything is whole sectors.
 */
import { err } from '../../errors.js';
import { RangeTree } from './range-tree.js';

/** ZFS aims for ~200 metaslabs per vdev (zfs_vdev_default_ms_count). */
const TARGET_METASLABS = 200;
/** Smallest metaslab: 16 MiB, so a maximal block always fits in one. */
const MIN_MS_SHIFT = 24;
/** Largest metaslab: 16 GiB (zfs_vdev_max_ms_shift). */
const MAX_MS_SHIFT = 34;
/** A metaslab with less free space than this fraction fills holes first. */
const LOW_FREE = 0.3;

/**
 * Fragmentation weight of a free segment by log2(bytes) - 9, from ZFS's
 * zfs_frag_table: 16 MiB and larger segments are 0% fragmented, each halving
 * of segment size below that costs a little more, 512 B segments are 100%.
 */
const FRAG_BY_SIZE = [100, 100, 98, 95, 90, 80, 70, 60, 50, 40, 30, 20, 15, 10, 5, 0];

interface Metaslab {
  /** First sector. */
  readonly start: number;
  /** Sectors (the last metaslab may be shorter than the others). */
  readonly size: number;
  /** Free segments, in absolute sectors. */
  readonly free: RangeTree;
  /** Next sector to try (absolute): where the previous allocation ended. */
  cursor: number;
}

export interface SpaceAllocatorOptions {
  /** Bytes of allocatable space; rounded down to whole sectors. */
  capacity: number;
  /** Allocation unit in bytes: a power of two >= 512 (the pool uses 4096). */
  sector: number;
  /** log2 of the metaslab size in bytes; default aims at ~200 metaslabs. */
  metaslabShift?: number;
  /** Runs at least this long (bytes) are spared while a low metaslab has holes; default 128K. */
  keepRun?: number;
}

function log2Exact(n: number): number {
  const l = Math.log2(n);
  return Number.isInteger(l) ? l : -1;
}

/** Metaslab size the way ZFS's vdev_metaslab_set_size picks it, with our floor. */
export function defaultMetaslabShift(capacity: number): number {
  const target = Math.floor(Math.log2(Math.max(1, capacity / TARGET_METASLABS)));
  return Math.min(MAX_MS_SHIFT, Math.max(MIN_MS_SHIFT, target));
}

export class SpaceAllocator {
  /** Allocatable bytes: the constructor's capacity rounded down to a whole sector. */
  readonly capacity: number;
  readonly sector: number;
  readonly metaslabShift: number;
  private readonly sectorShift: number;
  private readonly totalSectors: number;
  private readonly msSectors: number;
  private readonly metaslabs: Metaslab[] = [];
  private freeSectors: number;
  /** The metaslab allocations go to until it cannot satisfy one. */
  private active = 0;
  /** keepRun in sectors. */
  private readonly keepSectors: number;
  /**
   * False once a search for holes (withHoles) found none; true again at the
   * next free, the only way a hole appears. Spares a vdev that is low but
   * unfragmented (written sequentially) a scan of every metaslab per block.
   */
  private holesMaybe = true;

  constructor(opts: SpaceAllocatorOptions) {
    const { capacity, sector } = opts;
    this.sectorShift = log2Exact(sector);
    if (this.sectorShift < 9 || this.sectorShift > 24) throw err.inval(`sector size ${sector} is not a power of two in 512..16M`);
    if (!Number.isSafeInteger(capacity) || capacity < sector) throw err.inval(`capacity ${capacity} is smaller than one sector`);
    this.sector = sector;
    this.totalSectors = Math.floor(capacity / sector);
    this.capacity = this.totalSectors * sector;
    const shift = opts.metaslabShift ?? defaultMetaslabShift(this.capacity);
    if (!Number.isInteger(shift) || shift < this.sectorShift || shift > 52) {
      throw err.inval(`metaslabShift ${shift} must be an integer in ${this.sectorShift}..52`);
    }
    this.metaslabShift = shift;
    this.keepSectors = Math.max(1, Math.ceil((opts.keepRun ?? 128 * 1024) / sector));
    this.msSectors = 2 ** (shift - this.sectorShift);
    for (let start = 0; start < this.totalSectors; start += this.msSectors) {
      const size = Math.min(this.msSectors, this.totalSectors - start);
      const free = new RangeTree();
      free.add(start, start + size);
      this.metaslabs.push({ start, size, free, cursor: start });
    }
    this.freeSectors = this.totalSectors;
  }

  allocatedBytes(): number {
    return (this.totalSectors - this.freeSectors) * this.sector;
  }

  freeBytes(): number {
    return this.freeSectors * this.sector;
  }

  /** Number of metaslabs (for status output and tests). */
  metaslabCount(): number {
    return this.metaslabs.length;
  }

  /** Number of free segments over all metaslabs (an index of how big a condensed space map would be). */
  freeSegmentCount(): number {
    let n = 0;
    for (const ms of this.metaslabs) n += ms.free.count;
    return n;
  }

  /** Largest contiguous free run in bytes, an upper bound on what alloc() can return. */
  maxFreeRun(): number {
    let m = 0;
    for (const ms of this.metaslabs) m = Math.max(m, ms.free.maxLength());
    return m * this.sector;
  }

  /**
   * Allocate `size` bytes (a positive multiple of the sector size). Returns
   * the byte offset, or -1 when no metaslab has a contiguous free run that
   * large; the caller then tries another vdev or reports ENOSPC.
   */
  alloc(size: number): number {
    const n = this.sectorsOf(size);
    const low = n < this.keepSectors && this.freeSectors < this.totalSectors * LOW_FREE;
    if (low) {
      const hole = this.hole(n);
      if (hole >= 0) return hole * this.sector;
    }
    // (When low, hole() found no hole in the active metaslab: allocIn need not look again.)
    let at = this.allocIn(this.metaslabs[this.active]!, n, low);
    if (at < 0) {
      // The active metaslab is exhausted for this size: move to the emptiest
      // one that can take it, so the next stretch of writes has the most
      // room to stay contiguous.
      const best = this.emptiestFitting(n);
      if (best < 0) return -1;
      this.active = best;
      at = this.allocIn(this.metaslabs[best]!, n);
    }
    return at * this.sector;
  }

  /** An allocation size in sectors; EINVAL unless a positive multiple of the sector. */
  private sectorsOf(size: number): number {
    if (!Number.isSafeInteger(size) || size <= 0 || size % this.sector !== 0) {
      throw err.inval(`allocation size ${size} is not a positive multiple of ${this.sector}`);
    }
    return size / this.sector;
  }

  /** The metaslab with the most free space whose largest run takes n sectors (ties: lower address), other than `except`; -1 if none. */
  private emptiestFitting(n: number, except = -1): number {
    let best = -1;
    let bestFree = -1;
    for (let i = 0; i < this.metaslabs.length; i++) {
      const ms = this.metaslabs[i]!;
      if (i !== except && ms.free.space > bestFree && ms.free.maxLength() >= n) {
        best = i;
        bestFree = ms.free.space;
      }
    }
    return best;
  }

  /**
   * Allocate like alloc(), but away from the active metaslab when another
   * can take it, and without making that one active: for space held back
   * (the metadata reserve, allocate.ts) that should not cut holes into the
   * stream of blocks being laid down. -1 when nothing fits anywhere.
   */
  allocAside(size: number): number {
    const n = this.sectorsOf(size);
    const best = this.emptiestFitting(n, this.active);
    if (best < 0) return this.alloc(size);
    return this.allocIn(this.metaslabs[best]!, n) * this.sector;
  }

  /**
   * A vdev running low: n sectors from a hole (a free segment shorter than
   * keepRun) in the active metaslab, else in the metaslab with the most
   * holes that may fit n (which becomes active); -1 if there is none.
   */
  private hole(n: number): number {
    let at = this.holeIn(this.metaslabs[this.active]!, n);
    if (at >= 0 || !this.holesMaybe) return at;
    const ms = this.withHoles(n);
    if (ms < 0) {
      this.holesMaybe = false;
      return -1;
    }
    at = this.holeIn(this.metaslabs[ms]!, n);
    if (at >= 0) this.active = ms;
    else this.holesMaybe = false; // (its search ran out of budget: do not search again per block)
    return at;
  }

  /** n sectors from a hole of exactly n sectors after the cursor, else from the first hole that fits; -1 if none. */
  private holeIn(ms: Metaslab, n: number): number {
    let at = ms.free.firstFitBelow(ms.cursor, n, n + 1);
    if (at < 0) at = ms.free.firstFitBelow(ms.cursor, n, this.keepSectors);
    return at < 0 ? -1 : this.take(ms, at, n);
  }

  /**
   * The metaslab other than the active one with the most holes in the size
   * classes whose every segment holds n sectors (its histogram's classes
   * from ceil(log2 n) up to keepRun's); -1 if none has any. A class that
   * may hold shorter segments is not counted: a metaslab with only those
   * would be picked, searched in vain, and picked again for every block.
   */
  private withHoles(n: number): number {
    const lo = Math.ceil(Math.log2(n));
    const hi = Math.floor(Math.log2(this.keepSectors));
    let best = -1;
    let most = 0;
    for (let i = 0; i < this.metaslabs.length; i++) {
      if (i === this.active) continue; // just searched
      const h = this.metaslabs[i]!.free.histCount;
      let c = 0;
      for (let b = lo; b < hi; b++) c += h[b]!;
      if (c > most) {
        most = c;
        best = i;
      }
    }
    return best;
  }

  /**
   * First-fit from the cursor, wrapping to the metaslab start; -1 if nothing fits.
   * A metaslab running low tries its holes first, unless the caller just did (holesSearched).
   */
  private allocIn(ms: Metaslab, n: number, holesSearched = false): number {
    if (ms.free.maxLength() < n) return -1;
    let at = !holesSearched && n < this.keepSectors && ms.free.space < ms.size * LOW_FREE ? ms.free.firstFitBelow(ms.cursor, n, this.keepSectors) : -1;
    if (at < 0) at = ms.free.firstFit(ms.cursor, n);
    if (at < 0) at = ms.free.firstFit(ms.start, n); // cannot fail: maxLength >= n
    return this.take(ms, at, n);
  }

  /** Sectors [at, at+n) of `ms`, free, become allocated; the cursor moves past them. Returns `at`. */
  private take(ms: Metaslab, at: number, n: number): number {
    ms.free.remove(at, at + n);
    ms.cursor = at + n;
    this.freeSectors -= n;
    return at;
  }

  /**
   * Return [offset, offset+size) to the free pool now. Every byte must be
   * allocated; otherwise (double free, or a range never allocated) throws
   * EFAULT, which means the caller's view of the pool is corrupt.
   */
  free(offset: number, size: number): void {
    const [a, b] = this.toSectors(offset, size);
    for (let ms = this.msIndex(a); ms < this.metaslabs.length && this.metaslabs[ms]!.start < b; ms++) {
      const m = this.metaslabs[ms]!;
      if (m.free.overlaps(Math.max(a, m.start), Math.min(b, m.start + m.size))) {
        throw err.corrupt(`free of [${offset}, +${size}): part of the range is already free (double free?)`);
      }
    }
    for (let ms = this.msIndex(a); ms < this.metaslabs.length && this.metaslabs[ms]!.start < b; ms++) {
      const m = this.metaslabs[ms]!;
      m.free.add(Math.max(a, m.start), Math.min(b, m.start + m.size));
    }
    this.freeSectors += b - a;
    this.holesMaybe = true;
  }

  /**
   * Mark [offset, offset+size) allocated while loading (space map replay,
   * metadata walk). Every byte must be free; an overlap means two owners
   * claim the same block, i.e. corruption: throws EFAULT, changes nothing.
   */
  claim(offset: number, size: number): void {
    const [a, b] = this.toSectors(offset, size);
    for (let ms = this.msIndex(a); ms < this.metaslabs.length && this.metaslabs[ms]!.start < b; ms++) {
      const m = this.metaslabs[ms]!;
      if (!m.free.contains(Math.max(a, m.start), Math.min(b, m.start + m.size))) {
        throw err.corrupt(`claim of [${offset}, +${size}) overlaps space that is already allocated`);
      }
    }
    for (let ms = this.msIndex(a); ms < this.metaslabs.length && this.metaslabs[ms]!.start < b; ms++) {
      const m = this.metaslabs[ms]!;
      m.free.remove(Math.max(a, m.start), Math.min(b, m.start + m.size));
    }
    this.freeSectors -= b - a;
  }

  /** True if any byte of the range is allocated. */
  isAllocated(offset: number, size: number): boolean {
    const [a, b] = this.toSectors(offset, size);
    for (let ms = this.msIndex(a); ms < this.metaslabs.length && this.metaslabs[ms]!.start < b; ms++) {
      const m = this.metaslabs[ms]!;
      if (!m.free.contains(Math.max(a, m.start), Math.min(b, m.start + m.size))) return true;
    }
    return false;
  }

  /**
   * Allocated extents as [offset, length] in bytes, in offset order, merged
   * across metaslab boundaries: the complement of the free segments. The
   * allocator must not change while this is being iterated.
   */
  *allocatedExtents(): Generator<[offset: number, length: number]> {
    const s = this.sector;
    let pos = 0; // first sector not yet accounted for
    for (const ms of this.metaslabs) {
      for (const [fs, fe] of ms.free.segments()) {
        if (fs > pos) yield [pos * s, (fs - pos) * s];
        pos = fe;
      }
    }
    if (pos < this.totalSectors) yield [pos * s, (this.totalSectors - pos) * s];
  }

  /**
   * Fragmentation of the free space, 0..100, as `zpool list` FRAG computes
   * it: each free segment weighted by a table indexed by its size class
   * (16 MiB+ counts as 0%, tiny ones as ~100%), averaged by free bytes.
   * 0 when nothing is free.
   */
  fragmentation(): number {
    let weighted = 0;
    let total = 0;
    for (const ms of this.metaslabs) {
      const { histSpace } = ms.free;
      for (let b = 0; b < histSpace.length; b++) {
        const space = histSpace[b]!;
        if (space === 0) continue;
        const idx = Math.min(FRAG_BY_SIZE.length - 1, Math.max(0, b + this.sectorShift - 9));
        weighted += space * FRAG_BY_SIZE[idx]!;
        total += space;
      }
    }
    return total === 0 ? 0 : Math.round(weighted / total);
  }

  private msIndex(sector: number): number {
    return Math.floor(sector / this.msSectors);
  }

  private toSectors(offset: number, size: number): [number, number] {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size <= 0) {
      throw err.inval(`bad range [${offset}, +${size})`);
    }
    if (offset % this.sector !== 0 || size % this.sector !== 0) {
      throw err.inval(`range [${offset}, +${size}) is not aligned to the ${this.sector}-byte sector`);
    }
    if (offset + size > this.capacity) {
      throw err.inval(`range [${offset}, +${size}) extends beyond the capacity ${this.capacity}`);
    }
    return [offset / this.sector, (offset + size) / this.sector];
  }
}
