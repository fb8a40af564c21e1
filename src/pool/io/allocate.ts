/**
 * The allocation stage of the I/O pipeline (ZFS's metaslab class): chooses a
 * top-level vdev and an offset for every block, keeps the pool's space
 * accounting, and enforces the free-deferral rule.
 *
 * Invariants:
 *  - A block freed in txg T becomes allocatable only after txg T+DEFER has
 *    synced. Until then the uberblocks of T-1 and T may still reach it, and a
 *    torn uberblock write must be able to fall back to them.
 *  - Data blocks are *logged*: each alloc and free is recorded for the space
 *    map of the txg that made it. Metadata that is reached from the MOS root
 *    (directory, space map log, MOS root itself) is *not* logged: import claims
 *    it by walking those trees, which breaks the circularity of a space map
 *    having to describe its own blocks.
 *
 * The metadata reserve. A txg's sync writes its data blocks first and its
 * indirect and MOS blocks last, each of those up to 128K and in 2-3 copies.
 * Admission counts bytes, so on a nearly full pool whose free space random
 * overwrites have cut into 16K holes a sync could find no run for a 128K
 * indirect block: it failed and the pool suspended, where the writer should
 * have had ENOSPC. So admission also holds back, as allocated runs of a
 * maximal metadata block each, the space the sync's metadata may need
 * (holdMeta, sized by MetaTally in object-state.ts). Data never gets those
 * runs; metadata that finds no room of its own is carved out of them; what
 * the synced txgs no longer need goes back (releaseMeta). The reserve is
 * not in any space map: after a crash it is simply free space.
 * Only whole runs count as held: a block carved out of a run uses the run
 * up, and what is left of it is an uncounted extra that smaller metadata
 * may still take, given back at the next release. (Counting the leftover
 * bytes let a reserve of 32K pieces pass for room a 48K block could not
 * use, and the sync failed after all.)
 */
import { err } from '../../errors.js';
import { SpaceAllocator } from '../space/allocator.js';
import type { SpaceRecord } from '../space/space-map.js';
import type { TopVdev } from '../vdev/types.js';
import type { Dva } from '../blkptr.js';

export const TXG_DEFER = 2;
/** Largest metadata block (indirect and byte-object blocks): one reserve run holds one. */
export const META_BLOCK = 128 * 1024;
/** Bytes to place on one top-level vdev before the rotor moves on (keeps sequential writes sequential). */
const ROTOR_BYTES = 1024 * 1024;

/** A top-level vdev new blocks may go to. */
const writable = (top: TopVdev): boolean => top.state() !== 'FAULTED' && top.state() !== 'UNAVAIL';

/** The empty set of vdevs to avoid (one-copy allocations); never added to. */
const NO_VDEVS: ReadonlySet<number> = new Set<number>();

/**
 * Append a space-map record for `d`, or extend the last one when it is the same
 * operation on the same vdev ending where `d` starts: allocation is mostly sequential,
 * so a txg's blocks log as a few long runs (fewer records to keep, encode and replay;
 * claim and free take ranges across metaslabs). Only the last record is extended, so
 * the log's order of operations is unchanged.
 */
function logRecord(recs: SpaceRecord[], op: 'alloc' | 'free', d: Dva, txg: number): void {
  const last = recs[recs.length - 1];
  if (last !== undefined && last.op === op && last.vdev === d.vdev && last.offset + last.length === d.offset) last.length += d.asize;
  else recs.push({ op, offset: d.offset, length: d.asize, txg, vdev: d.vdev });
}

export class Allocation {
  readonly allocators: SpaceAllocator[];
  private rotor = 0;
  private rotorBytes = 0;
  /** txg -> records to append to the space map at that txg's sync. */
  private records = new Map<number, SpaceRecord[]>();
  /** txg -> frees that become allocatable once txg + TXG_DEFER has synced. */
  private deferred = new Map<number, Dva[]>();
  /** Bytes freed but not yet allocatable. */
  private deferredBytes = 0;
  /** Free bytes the intent log must leave to the txgs (set by the pool: slop + dirty data). */
  logReserve: () => number = () => 0;
  /** Whole runs held for the syncs' metadata (allocated in the allocators, logged nowhere). */
  private reserve: Dva[] = [];
  private reserveBytes = 0;
  /** What is left of runs carved from: still allocated and carvable, not counted as held. */
  private extras: Dva[] = [];

  /**
   * `tops` is indexed by top-level id (the DVA's vdev field). Ids in
   * `exclude` (separate log devices) hold no ordinary blocks.
   */
  constructor(
    readonly tops: TopVdev[],
    private exclude: Set<number> = new Set(),
  ) {
    this.allocators = tops.map((t) => new SpaceAllocator({ capacity: t.capacity, sector: 4096 }));
  }

  /** Raw capacity of all top-level vdevs (allocatable address space). */
  capacity(): number {
    return this.allocators.reduce((n, a, i) => (this.exclude.has(i) ? n : n + a.capacity), 0);
  }

  /** Allocated bytes, including frees still waiting out their deferral. */
  allocated(): number {
    return this.allocators.reduce((n, a, i) => (this.exclude.has(i) ? n : n + a.allocatedBytes()), 0);
  }

  /** Bytes freed but not yet allocatable. */
  pendingFrees(): number {
    return this.deferredBytes;
  }

  /** Free bytes including those waiting out the deferral (they are as good as free for accounting). */
  free(): number {
    return this.capacity() - this.allocated() + this.deferredBytes;
  }

  /**
   * Allocate `copies` DVAs for a block of `psize` bytes, on distinct
   * top-level vdevs when there are enough of them. Metadata (`meta`) that
   * finds no room is carved out of the reserve.
   */
  alloc(psize: number, copies: number, txg: number, logged: boolean, meta = false): Dva[] {
    const dvas: Dva[] = [];
    // (No set for one copy: this runs for every block written.)
    const used = copies > 1 ? new Set<number>() : null;
    for (let c = 0; c < copies; c++) {
      const avoid = used ?? NO_VDEVS;
      const dva = this.allocOne(psize, avoid) ?? (meta ? this.carve(psize, avoid) : null);
      if (!dva) {
        for (const d of dvas) this.allocators[d.vdev]!.free(d.offset, d.asize);
        throw err.nospc('pool is out of space');
      }
      used?.add(dva.vdev);
      dvas.push(dva);
    }
    if (logged) {
      const recs = this.recordsFor(txg);
      for (const d of dvas) logRecord(recs, 'alloc', d, txg);
    }
    return dvas;
  }

  private allocOne(psize: number, avoid: ReadonlySet<number>): Dva | null {
    const n = this.tops.length;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < n; i++) {
        const v = (this.rotor + i) % n;
        if (pass === 0 && avoid.has(v) && avoid.size < n) continue;
        if (this.exclude.has(v)) continue;
        const top = this.tops[v]!;
        if (!writable(top)) continue;
        const asize = top.asize(psize);
        const off = this.allocators[v]!.alloc(asize);
        if (off < 0) continue;
        if (v === this.rotor) {
          this.rotorBytes += asize;
          if (this.rotorBytes >= ROTOR_BYTES) {
            this.rotor = (this.rotor + 1) % n;
            this.rotorBytes = 0;
          }
        }
        return { vdev: v, offset: off, asize };
      }
    }
    return null;
  }

  /** Bytes held in the metadata reserve, in whole runs. */
  reservedForMeta(): number {
    return this.reserveBytes;
  }

  /** Everything the reserve keeps allocated: whole runs and leftovers of carved ones. */
  heldForMeta(): number {
    let n = this.reserveBytes;
    for (const d of this.extras) n += d.asize;
    return n;
  }

  /** The reserve's unit on the data vdevs: the allocated size of the largest metadata block. */
  metaRun(): number {
    return this.maxAsize(META_BLOCK);
  }

  /** The most a block of `psize` bytes takes on any top-level that takes new blocks (raidz parity and padding, sector rounding). */
  maxAsize(psize: number): number {
    let m = 0;
    for (let v = 0; v < this.tops.length; v++) if (!this.exclude.has(v)) m = Math.max(m, this.tops[v]!.asize(psize));
    return m || psize;
  }

  /**
   * Grow the metadata reserve to at least `bytes`, a maximal metadata block
   * per run, taken away from where data is being laid down. False if the
   * pool has no such runs left (what it has stays held).
   */
  holdMeta(bytes: number): boolean {
    while (this.reserveBytes < bytes) {
      const d = this.allocRun();
      if (!d) return false;
      this.reserve.push(d);
      this.reserveBytes += d.asize;
    }
    return true;
  }

  /** Give the reserve back down to `bytes` (whole runs, newest first), and every leftover. */
  releaseMeta(bytes: number): void {
    for (const d of this.extras.splice(0)) this.allocators[d.vdev]!.free(d.offset, d.asize);
    while (this.reserveBytes > bytes && this.reserve.length) {
      const d = this.reserve.pop()!;
      this.allocators[d.vdev]!.free(d.offset, d.asize);
      this.reserveBytes -= d.asize;
    }
  }

  /** One reserve run, on the data vdevs in turn. */
  private allocRun(): Dva | null {
    const n = this.tops.length;
    for (let i = 0; i < n; i++) {
      const v = (this.reserve.length + i) % n;
      if (this.exclude.has(v)) continue;
      const top = this.tops[v]!;
      if (!writable(top)) continue;
      const asize = top.asize(META_BLOCK);
      const off = this.allocators[v]!.allocAside(asize);
      if (off >= 0) return { vdev: v, offset: off, asize };
    }
    return null;
  }

  /**
   * A block of `psize` for metadata that found no room: from a leftover if
   * one fits, else cut from the front of a whole run (which is then used up:
   * its rest becomes a leftover). A vdev not in `avoid` is preferred.
   */
  private carve(psize: number, avoid: ReadonlySet<number>): Dva | null {
    const fits = (d: Dva) => {
      const top = this.tops[d.vdev]!;
      return writable(top) && top.asize(psize) <= d.asize;
    };
    const pick = (list: Dva[]) => {
      let at = -1;
      for (let i = 0; i < list.length; i++) {
        if (!fits(list[i]!)) continue;
        at = i;
        if (!avoid.has(list[i]!.vdev)) break;
      }
      return at;
    };
    let from = this.extras;
    let i = pick(from);
    if (i < 0) {
      from = this.reserve;
      i = pick(from);
      if (i < 0) return null;
    }
    const r = from[i]!;
    from.splice(i, 1);
    if (from === this.reserve) this.reserveBytes -= r.asize;
    const asize = this.tops[r.vdev]!.asize(psize);
    if (asize < r.asize) this.extras.push({ vdev: r.vdev, offset: r.offset + asize, asize: r.asize - asize });
    return { vdev: r.vdev, offset: r.offset, asize };
  }

  /**
   * One block for the intent log: on a separate log device when the pool
   * has one, else anywhere. Never space-map logged (the chain is claimed by
   * walking it at import).
   */
  allocLog(size: number): Dva {
    for (const v of this.exclude) {
      const top = this.tops[v]!;
      if (!writable(top)) continue;
      const asize = top.asize(size);
      const off = this.allocators[v]!.alloc(asize);
      if (off >= 0) return { vdev: v, offset: off, asize };
    }
    // Log blocks come from the space the open and syncing txgs are counting on (their
    // dirty data and the slop for metadata): taking it let a nearly full pool fail
    // its next sync with ENOSPC and suspend. Refuse instead; the caller syncs the txg.
    if (this.capacity() - this.allocated() - size < this.logReserve()) throw err.nospc('pool is out of space for the intent log');
    const d = this.allocOne(size, new Set());
    if (!d) throw err.nospc('pool is out of space for the intent log');
    return d;
  }

  /** Free DVAs in txg `txg` (deferred). */
  freeDvas(dvas: Dva[], txg: number, logged: boolean): void {
    let list = this.deferred.get(txg);
    if (!list) this.deferred.set(txg, (list = []));
    for (const d of dvas) {
      list.push(d);
      this.deferredBytes += d.asize;
    }
    if (logged) {
      const recs = this.recordsFor(txg);
      for (const d of dvas) logRecord(recs, 'free', d, txg);
    }
  }

  /** Undo an allocation made in the same txg that was never referenced (failed write). */
  unalloc(dvas: Dva[]): void {
    for (const d of dvas) this.allocators[d.vdev]!.free(d.offset, d.asize);
  }

  private recordsFor(txg: number): SpaceRecord[] {
    let r = this.records.get(txg);
    if (!r) this.records.set(txg, (r = []));
    return r;
  }

  /** Records to log for `txg` (removed from the pending set). */
  takeRecords(txg: number): SpaceRecord[] {
    const r = this.records.get(txg) ?? [];
    this.records.delete(txg);
    return r;
  }

  /** After txg `synced` is committed: release frees whose deferral has passed. */
  synced(synced: number): void {
    for (const [txg, list] of this.deferred) {
      if (txg + TXG_DEFER <= synced) {
        for (const d of list) {
          this.allocators[d.vdev]!.free(d.offset, d.asize);
          this.deferredBytes -= d.asize;
        }
        this.deferred.delete(txg);
      }
    }
  }

  /** Claim a range while loading (space map replay or metadata walk). */
  claim(d: Dva): void {
    const a = this.allocators[d.vdev];
    if (!a) throw err.corrupt(`block pointer names vdev ${d.vdev}, which the pool does not have`);
    a.claim(d.offset, d.asize);
  }
}
