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
 */
import { err } from '../../errors.js';
import { SpaceAllocator } from '../space/allocator.js';
import type { SpaceRecord } from '../space/space-map.js';
import type { TopVdev } from '../vdev/types.js';
import type { Dva } from '../blkptr.js';

export const TXG_DEFER = 2;
/** Bytes to place on one top-level vdev before the rotor moves on (keeps sequential writes sequential). */
const ROTOR_BYTES = 1024 * 1024;

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
   * top-level vdevs when there are enough of them.
   */
  alloc(psize: number, copies: number, txg: number, logged: boolean): Dva[] {
    const dvas: Dva[] = [];
    const used = new Set<number>();
    for (let c = 0; c < copies; c++) {
      const dva = this.allocOne(psize, used);
      if (!dva) {
        for (const d of dvas) this.allocators[d.vdev]!.free(d.offset, d.asize);
        throw err.nospc('pool is out of space');
      }
      used.add(dva.vdev);
      dvas.push(dva);
    }
    if (logged) {
      const recs = this.recordsFor(txg);
      for (const d of dvas) recs.push({ op: 'alloc', offset: d.offset, length: d.asize, txg, vdev: d.vdev });
    }
    return dvas;
  }

  private allocOne(psize: number, avoid: Set<number>): Dva | null {
    const n = this.tops.length;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < n; i++) {
        const v = (this.rotor + i) % n;
        if (pass === 0 && avoid.has(v) && avoid.size < n) continue;
        if (this.exclude.has(v)) continue;
        const top = this.tops[v]!;
        if (top.state() === 'FAULTED' || top.state() === 'UNAVAIL') continue;
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

  /**
   * One block for the intent log: on a separate log device when the pool
   * has one, else anywhere. Never space-map logged (the chain is claimed by
   * walking it at import).
   */
  allocLog(size: number): Dva {
    for (const v of this.exclude) {
      const top = this.tops[v]!;
      if (top.state() === 'FAULTED' || top.state() === 'UNAVAIL') continue;
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
      for (const d of dvas) recs.push({ op: 'free', offset: d.offset, length: d.asize, txg, vdev: d.vdev });
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
