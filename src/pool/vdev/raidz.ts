/**
 * RaidzVdev: a raidz1/2/3 top-level (`pool create tank raidz2 a b c d`).
 *
 * Every block is written as its own full stripe (dynamic width, see
 * raidz-math.ts), so no write ever updates part of an existing stripe: there
 * is no read-modify-write and no write hole. Blocks are never overwritten in
 * place by the pool (copy-on-write), and a crash mid-write leaves the previous
 * tree, which does not reference the half-written stripe, intact.
 *
 * Reads fetch only the data columns. When a column cannot be read (device
 * unusable, being resilvered, or an I/O error) it is rebuilt from parity; when
 * the block fails its checksum although every column read fine, some column
 * is silently wrong and we try, like vdev_raidz_combrec, every set of up to
 * nparity columns (fewer when some are already missing) as "bad", rebuild them
 * from the rest and ask `verify`. The first reconstruction that verifies is
 * returned; then every column that was unreadable or differs from it is
 * rewritten (self-healing) and, if it had read without error, blamed with a
 * CKSUM error. Scrub reads parity too and repairs stale parity.
 *
 * State: more than nparity children unusable -> UNAVAIL (OFFLINE if all are
 * offline); any unusable or degraded -> DEGRADED.
 */
import { err } from '../../errors.js';
import { leafUsable } from './leaf-base.js';
import { checkTopRange, flushAll, leafDataBytes, topCapacity, tryRead, tryWrite, type VdevEvents } from './child-io.js';
import type { LeafConfig } from './leaf-config.js';
import { ChildSet } from './child-set.js';
import { childConfig, childNeedsResilver, childStale, realLeaves } from './replacing.js';
import { mirrorState } from './mirror.js';
import { generateParity, raidzAsize, raidzMap, reconstruct, splitData, type RaidzMap } from './raidz-math.js';
import {
  LEAF_DATA_START,
  SECTOR,
  type Leaf,
  type ReadOptions,
  type TopVdev,
  type VdevConfig,
  type VdevState,
  type Verify,
} from './types.js';

export interface RaidzVdevOptions {
  id: number;
  guid: string;
  nparity: 1 | 2 | 3;
  asize?: number;
  childConfigs: LeafConfig[];
  log?: boolean;
  events?: VdevEvents;
  readOnly?: boolean;
}

/** A reconstruction that verified: the block, each column's correct contents (parity computed on demand). */
interface Solution {
  data: Buffer;
  col(c: number): Buffer;
  /** True when silent damage was searched for (every column read fine, or extra columns were assumed bad). */
  searched: boolean;
}

/** Why a column holds no data for this read. */
type Gap = 'unusable' | 'resilvering' | 'ioerror';

export class RaidzVdev implements TopVdev {
  readonly id: number;
  readonly guid: string;
  readonly nparity: 1 | 2 | 3;
  readonly capacity: number;
  readonly dataRatio: number;
  /** Bytes of each child's data area this raidz uses (capacity / children). */
  readonly childBytes: number;
  private readonly set: ChildSet;
  /** Stale children (the set's; read on every I/O). */
  private readonly resilvering: Set<Leaf>;
  private readonly events: VdevEvents;

  constructor(
    readonly children: Leaf[],
    private readonly opts: RaidzVdevOptions,
  ) {
    const dcols = children.length;
    if (dcols < opts.nparity + 1 || dcols !== opts.childConfigs.length) {
      throw err.inval(`raidz${opts.nparity} needs at least ${opts.nparity + 1} children and their configs`);
    }
    this.id = opts.id;
    this.set = new ChildSet(children, opts.childConfigs, `raidz ${opts.id}`);
    this.resilvering = this.set.resilvering;
    this.guid = opts.guid;
    this.nparity = opts.nparity;
    this.events = opts.events ?? {};
    this.dataRatio = (dcols - opts.nparity) / dcols;
    const sizes = children.filter((c) => leafUsable(c.state)).map((c) => leafDataBytes(c.size));
    this.capacity = topCapacity(opts.asize, sizes.length > 0 ? Math.min(...sizes) * dcols : 0);
    this.childBytes = Math.floor(this.capacity / dcols / SECTOR) * SECTOR;
    children.forEach((c, i) => {
      if (leafUsable(c.state) && leafDataBytes(c.size) < this.childBytes) c.state = 'UNAVAIL';
    });
  }

  asize(psize: number): number {
    return raidzAsize(psize, this.children.length, this.nparity);
  }

  private map(offset: number, psize: number): RaidzMap {
    checkTopRange(`raidz ${this.id}`, offset, psize, this.capacity);
    const m = raidzMap(offset, psize, this.children.length, this.nparity);
    for (const c of m.cols) {
      if (c.offset + c.size > this.childBytes) throw err.inval(`raidz ${this.id}: block at ${offset} (+${psize}) runs past the end of the children`);
    }
    return m;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.opts.readOnly) throw err.perm(`raidz ${this.id}: pool is read-only`);
    const m = this.map(offset, data.length);
    const dataCols = splitData(m, data);
    const cols = [...generateParity(dataCols, m.cols[0]!.size, this.nparity), ...dataCols];
    const ok = await Promise.all(
      cols.map((b, c) => tryWrite(this.children[m.cols[c]!.devidx]!, LEAF_DATA_START + m.cols[c]!.offset, b)),
    );
    let failed = 0;
    ok.forEach((w, c) => {
      if (w) return;
      failed++;
      const col = m.cols[c]!;
      this.events.onWriteMissed?.(this.children[col.devidx]!, LEAF_DATA_START + col.offset, col.size);
    });
    // Up to nparity lost columns are rebuilt from parity on read (and by resilver).
    if (failed > this.nparity) throw err.io(`raidz ${this.id}: write at ${offset} lost ${failed} columns (parity ${this.nparity})`);
  }

  async read(offset: number, psize: number, verify: Verify, opts: ReadOptions = {}): Promise<Buffer> {
    const m = this.map(offset, psize);
    const mode = opts.mode ?? 'normal';
    const np = this.nparity;
    const n = m.acols;
    const cols: (Buffer | undefined)[] = new Array(n).fill(undefined);
    const gaps = new Map<number, Gap>();
    const readCol = async (c: number): Promise<void> => {
      const col = m.cols[c]!;
      const leaf = this.children[col.devidx]!;
      if (!leafUsable(leaf.state)) gaps.set(c, 'unusable');
      else if (childStale(leaf, this.resilvering)) gaps.set(c, 'resilvering');
      else {
        const b = await tryRead(leaf, LEAF_DATA_START + col.offset, col.size);
        if (b === undefined) gaps.set(c, 'ioerror');
        else cols[c] = b;
      }
    };
    const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

    // Normal reads skip parity unless a data column is known to be missing
    // (then parity is needed anyway: fetch it in the same round, as ZFS
    // does); scrub and resilver check it always.
    const knownMissing = range(np, n).some((c) => {
      const leaf = this.children[m.cols[c]!.devidx]!;
      return !leafUsable(leaf.state) || childStale(leaf, this.resilvering);
    });
    const parityFirst = mode !== 'normal' || knownMissing;
    await Promise.all(range(parityFirst ? 0 : np, n).map(readCol));
    if (!parityFirst) {
      if (gaps.size === 0) {
        const data = Buffer.concat(cols.slice(np) as Buffer[], psize);
        if (verify(data)) return data;
      }
      // A read error or a checksum mismatch: now parity is needed.
      await Promise.all(range(0, np).map(readCol));
    }

    if (gaps.size > np) {
      // Too many columns missing to even try: an I/O failure, not a checksum one.
      throw err.io(`raidz ${this.id}: ${gaps.size} columns of the block at offset ${offset} are unavailable (parity ${np})`);
    }
    const good = this.solve(m, cols, gaps, verify);
    if (good === undefined) {
      // Every reconstruction failed: each column that read fine is suspect
      // (ZFS reports a checksum error on each, vdev_raidz_io_done_unrecoverable).
      for (let c = 0; c < n; c++) if (cols[c] !== undefined) this.blame(m, c);
      throw err.io(`raidz ${this.id}: cannot reconstruct block at offset ${offset} (+${psize})`);
    }
    await this.heal(m, cols, gaps, good, opts);
    return good.data;
  }

  /**
   * Find column contents that verify: first with only the unreadable columns
   * rebuilt, then assuming 1, 2, ... more columns silently bad.
   */
  private solve(m: RaidzMap, cols: (Buffer | undefined)[], gaps: Map<number, Gap>, verify: Verify): Solution | undefined {
    const np = this.nparity;
    const n = m.acols;
    const known = [...gaps.keys()];
    if (known.length > np) return undefined;
    const readable = Array.from({ length: n }, (_, c) => c).filter((c) => !gaps.has(c));
    for (let extra = 0; extra <= np - known.length; extra++) {
      for (const combo of combinations(readable, extra)) {
        const erased = [...known, ...combo];
        // Assuming only parity bad changes no data: the as-read data already
        // failed (or, with nothing erased, is what we test once).
        if (extra > 0 && !erased.some((c) => c >= np)) continue;
        const trial = cols.slice();
        for (const c of erased) trial[c] = undefined;
        reconstruct(m, trial, erased);
        const data = Buffer.concat(trial.slice(np) as Buffer[]);
        if (!verify(data)) continue;
        let parity: Buffer[] | undefined;
        return {
          data,
          col: (c) => (c >= np ? trial[c]! : (parity ??= generateParity(trial.slice(np), m.cols[0]!.size, np))[c]!),
          searched: extra > 0 || known.length === 0,
        };
      }
    }
    return undefined;
  }

  /** Rewrite every column that was unreadable or wrong; blame the wrong ones. */
  private async heal(m: RaidzMap, cols: (Buffer | undefined)[], gaps: Map<number, Gap>, good: Solution, opts: ReadOptions): Promise<void> {
    const mode = opts.mode ?? 'normal';
    const np = this.nparity;
    const fix: number[] = [];
    for (let c = 0; c < m.acols; c++) {
      const gap = gaps.get(c);
      if (gap === 'unusable') continue;
      if (gap === 'ioerror') fix.push(c);
      else if (gap === 'resilvering') {
        if (mode === 'resilver' || mode === 'scrub') fix.push(c);
      } else if (cols[c] !== undefined && (c >= np || mode !== 'normal' || good.searched) && !cols[c]!.equals(good.col(c))) {
        // Parity read only to rebuild a missing column is not checked on a
        // normal read (regenerating Q/R costs a pass over the block); scrub
        // and any read that had to search for a bad column check it.
        this.blame(m, c);
        fix.push(c);
      } else if (mode === 'resilver' && childNeedsResilver(this.children[m.cols[c]!.devidx]!, this.resilvering)) {
        // A replacing/spare child read fine from its original: copy onto the new member.
        fix.push(c);
      }
    }
    if (this.opts.readOnly || fix.length === 0) return;
    await Promise.all(
      fix.map(async (c) => {
        const col = m.cols[c]!;
        const leaf = this.children[col.devidx]!;
        const at = LEAF_DATA_START + col.offset;
        if (await tryWrite(leaf, at, good.col(c))) {
          opts.onRepair?.(leaf, at, col.size);
          this.events.onRepair?.(leaf, at, col.size);
        }
      }),
    );
  }

  private blame(m: RaidzMap, c: number): void {
    const col = m.cols[c]!;
    const leaf = this.children[col.devidx]!;
    if (childStale(leaf, this.resilvering)) return;
    leaf.errors.cksum++;
    this.events.onChecksumError?.(leaf, LEAF_DATA_START + col.offset, col.size);
  }

  async flush(): Promise<void> {
    await flushAll(this.children);
    if (this.state() === 'UNAVAIL') throw err.io(`raidz ${this.id}: more than ${this.nparity} children failed`);
  }

  state(): VdevState {
    return mirrorState(this.children, this.nparity);
  }

  leaves(): Leaf[] {
    return this.children.flatMap(realLeaves);
  }

  setResilvering(leaf: Leaf, on: boolean): void {
    this.set.setResilvering(leaf, on);
  }

  /** The config entry a child was opened from (for a replacing/spare child: its original's). */
  childConfigOf(leaf: Leaf): LeafConfig {
    return this.set.configOf(leaf);
  }

  /** Children marked as being resilvered. */
  resilveringChildren(): Leaf[] {
    return this.set.stale();
  }

  /** Put `neu` in the place of child `old` (replace, spare, end of a replacement). */
  replaceChild(old: Leaf, neu: Leaf, cfg: LeafConfig, stale: boolean): void {
    this.set.replace(old, neu, cfg, stale);
  }

  config(): VdevConfig {
    return {
      type: 'raidz',
      guid: this.guid,
      id: this.id,
      nparity: this.nparity,
      asize: this.capacity,
      ...(this.opts.log ? { log: true } : {}),
      children: this.children.map((c, i) => childConfig(c, this.opts.childConfigs[i]!, this.resilvering.has(c))),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((c) => c.close()));
  }
}

/** All k-element subsets of `items`, in lexicographic order. */
export function* combinations<T>(items: T[], k: number): Generator<T[]> {
  if (k === 0) {
    yield [];
    return;
  }
  const idx = Array.from({ length: k }, (_, i) => i);
  if (k > items.length) return;
  for (;;) {
    yield idx.map((i) => items[i]!);
    let i = k - 1;
    while (i >= 0 && idx[i] === items.length - k + i) i--;
    if (i < 0) return;
    idx[i]!++;
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1]! + 1;
  }
}
