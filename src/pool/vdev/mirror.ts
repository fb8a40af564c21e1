/**
 * MirrorVdev: an n-way mirror top-level (`pool create tank mirror a b [c]`).
 *
 * Address space: top-level offset X is leaf offset LEAF_DATA_START + X on
 * every child; capacity is the smallest child's data area (or the asize
 * recorded at creation).
 *
 * Writes go to every usable child and succeed when at least one copy landed;
 * a child that missed a write is reported through onWriteMissed so the engine
 * can resilver it (ZFS records a DTL). Reads ask one child (rotating, for
 * balance) and fall back to the others only on a read error or checksum
 * mismatch; the first verified copy is returned and every bad copy is
 * rewritten with it before the read resolves (self-healing), never before the
 * good copy has verified. Scrub and resilver reads check every child.
 *
 * State (ZFS's vdev_mirror_state_change): all children unusable -> OFFLINE if
 * they are all offline, else UNAVAIL; some unusable or degraded -> DEGRADED;
 * else ONLINE. n-1 children may fail.
 */
import { err } from '../../errors.js';
import { leafUsable } from './leaf-base.js';
import { checkTopRange, flushAll, leafDataBytes, roundUp, topCapacity, tryRead, tryWrite, type VdevEvents } from './child-io.js';
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
import type { LeafConfig } from './leaf-config.js';
import { ChildSet } from './child-set.js';
import { childConfig, childNeedsResilver, childStale, realLeaves } from './replacing.js';

export interface MirrorVdevOptions {
  id: number;
  guid: string;
  /** Capacity recorded at creation (config asize). */
  asize?: number;
  /** Config entries of the children, in the same order as the leaves. */
  childConfigs: LeafConfig[];
  log?: boolean;
  events?: VdevEvents;
  /** Pool imported read-only: never write, not even repairs. */
  readOnly?: boolean;
}

export class MirrorVdev implements TopVdev {
  readonly id: number;
  readonly guid: string;
  readonly capacity: number;
  readonly dataRatio = 1;
  private next = 0;
  private readonly set: ChildSet;
  /** Stale children (the set's; read on every I/O). */
  private readonly resilvering: Set<Leaf>;
  private readonly events: VdevEvents;

  constructor(
    readonly children: Leaf[],
    private readonly opts: MirrorVdevOptions,
  ) {
    if (children.length < 1 || children.length !== opts.childConfigs.length) throw err.inval('mirror needs children and their configs');
    this.id = opts.id;
    this.set = new ChildSet(children, opts.childConfigs, `mirror ${opts.id}`);
    this.resilvering = this.set.resilvering;
    this.guid = opts.guid;
    this.events = opts.events ?? {};
    const sizes = children.filter((c) => leafUsable(c.state)).map((c) => leafDataBytes(c.size));
    this.capacity = topCapacity(opts.asize, sizes.length > 0 ? Math.min(...sizes) : 0);
    children.forEach((c, i) => {
      // A child too small for the address space cannot hold its copy.
      if (leafUsable(c.state) && leafDataBytes(c.size) < this.capacity) c.state = 'UNAVAIL';
    });
  }

  asize(psize: number): number {
    return roundUp(psize, SECTOR);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    await this.writev(offset, [data]);
  }

  /** Adjacent blocks in one pwritev per child (no copy into one big buffer). */
  async writev(offset: number, data: Buffer[]): Promise<void> {
    let len = 0;
    for (const b of data) len += b.length;
    checkTopRange(`mirror ${this.id}`, offset, len, this.capacity);
    if (this.opts.readOnly) throw err.perm(`mirror ${this.id}: pool is read-only`);
    const at = LEAF_DATA_START + offset;
    const payload = data.length === 1 ? data[0]! : data;
    const ok = await Promise.all(this.children.map((c) => tryWrite(c, at, payload)));
    let good = 0;
    ok.forEach((w, i) => {
      if (w) good++;
      else this.events.onWriteMissed?.(this.children[i]!, at, len);
    });
    if (good === 0) throw err.io(`mirror ${this.id}: write at ${offset} failed on every child`);
  }

  async read(offset: number, psize: number, verify: Verify, opts: ReadOptions = {}): Promise<Buffer> {
    checkTopRange(`mirror ${this.id}`, offset, psize, this.capacity);
    const mode = opts.mode ?? 'normal';
    const at = LEAF_DATA_START + offset;
    const n = this.children.length;
    // Children that may hold a valid copy, starting at the rotating cursor;
    // children being resilvered come last (their copy may be stale).
    const start = this.next++ % n;
    const order: Leaf[] = [];
    for (let k = 0; k < n; k++) order.push(this.children[(start + k) % n]!);
    const stale = (c: Leaf): boolean => childStale(c, this.resilvering);
    order.sort((a, b) => Number(stale(a)) - Number(stale(b)));

    let good: Buffer | undefined;
    const bad: Leaf[] = [];
    if (mode === 'normal') {
      for (const c of order) {
        if (!leafUsable(c.state)) continue;
        const b = await tryRead(c, at, psize);
        if (b === undefined) {
          bad.push(c);
          continue;
        }
        if (verify(b)) {
          good = b;
          break;
        }
        this.blame(c, at, psize);
        bad.push(c);
      }
    } else {
      // Scrub / resilver: every child is read and checked; a resilver does
      // not read stale children, it rewrites them.
      const skip = (c: Leaf): boolean => mode === 'resilver' && stale(c);
      const copies = await Promise.all(order.map((c) => (skip(c) ? Promise.resolve(undefined) : tryRead(c, at, psize))));
      order.forEach((c, i) => {
        if (!leafUsable(c.state)) return;
        const b = copies[i];
        if (skip(c)) {
          bad.push(c);
          return;
        }
        if (b === undefined) {
          bad.push(c);
        } else if (good === undefined && verify(b)) {
          good = b;
        } else if (good !== undefined && b.equals(good)) {
          // identical to the verified copy: fine
        } else if (good === undefined || !verify(b)) {
          this.blame(c, at, psize);
          bad.push(c);
        }
        // A replacing/spare child whose new member is behind is rewritten
        // even though its original served a good copy.
        if (mode === 'resilver' && childNeedsResilver(c, this.resilvering) && !bad.includes(c)) bad.push(c);
      });
    }
    if (good === undefined) throw err.io(`mirror ${this.id}: no child holds a valid copy at offset ${offset}`);
    await this.repair(bad, at, good, opts);
    return good;
  }

  private blame(c: Leaf, at: number, len: number): void {
    // A stale child being resilvered is expected to disagree.
    if (childStale(c, this.resilvering)) return;
    c.errors.cksum++;
    this.events.onChecksumError?.(c, at, len);
  }

  /** Rewrite bad copies with the verified data (self-healing); a failed repair is counted by the leaf. */
  private async repair(bad: Leaf[], at: number, good: Buffer, opts: ReadOptions): Promise<void> {
    if (this.opts.readOnly || bad.length === 0) return;
    await Promise.all(
      bad.map(async (c) => {
        if (await tryWrite(c, at, good)) {
          opts.onRepair?.(c, at, good.length);
          this.events.onRepair?.(c, at, good.length);
        }
      }),
    );
  }

  async flush(): Promise<void> {
    await flushAll(this.children);
    // A mirror stays usable while any child is: the failed ones are now
    // counted/faulted by their leaves and will be resilvered.
    if (this.state() === 'UNAVAIL') throw err.io(`mirror ${this.id}: no child could be flushed`);
  }

  state(): VdevState {
    return mirrorState(this.children, this.children.length - 1);
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

  /** Add a child (attach): stale until resilvered. */
  addChild(leaf: Leaf, cfg: LeafConfig): void {
    if (leafDataBytes(leaf.size) < this.capacity) throw err.inval(`${leaf.path} is too small for mirror ${this.id}`);
    this.set.add(leaf, cfg);
  }

  /** Remove a child (detach). The tree checks that a valid copy remains. */
  removeChild(leaf: Leaf): void {
    this.set.remove(leaf);
  }

  config(): VdevConfig {
    return {
      type: 'mirror',
      guid: this.guid,
      id: this.id,
      asize: this.capacity,
      ...(this.opts.log ? { log: true } : {}),
      children: this.children.map((c, i) => childConfig(c, this.opts.childConfigs[i]!, this.resilvering.has(c))),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((c) => c.close()));
  }
}

/**
 * State of a redundant group whose children may lose up to `tolerance`
 * members (mirror: n-1, raidz: nparity) — ZFS's vdev_propagate_state with
 * vdev_mirror_state_change / vdev_raidz_state_change.
 */
export function mirrorState(children: Leaf[], tolerance: number): VdevState {
  let faulted = 0;
  let degraded = 0;
  let offline = 0;
  for (const c of children) {
    if (!leafUsable(c.state)) {
      faulted++;
      if (c.state === 'OFFLINE') offline++;
    } else if (c.state === 'DEGRADED') degraded++;
  }
  if (faulted > tolerance) return faulted === children.length && offline === faulted ? 'OFFLINE' : 'UNAVAIL';
  if (faulted + degraded > 0) return 'DEGRADED';
  return 'ONLINE';
}
