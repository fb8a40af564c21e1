/**
 * ReplacingLeaf: the interior `replacing` and `spare` vdevs of ZFS, seen by
 * the parent top-level as one child (one mirror copy / one raidz column).
 *
 * members[0] is the original device; the others are its replacement or hot
 * spare. A member is *stale* until resilver has copied everything onto it.
 *  - Reads come from the first usable member that is not stale (normally the
 *    original, so its redundancy is kept during the resilver); with none, the
 *    child is treated by the parent as missing and rebuilt from the others.
 *  - Writes go to every usable member (new data lands on the replacement at
 *    once, so resilver only has to copy what existed before).
 *  - A resilver read rewrites this child whenever a usable member is stale.
 *  - Errors of a read are the errors of the member that served it, so CKSUM
 *    errors found by the parent land on the real device.
 *
 * `replacing` is removed when resilver completes (the tree keeps the last
 * member); `spare` stays until the administrator detaches one side, as in ZFS.
 */
import { err } from '../../errors.js';
import { leafUsable } from './leaf-base.js';
import { leafConfigOf, type LeafConfig } from './leaf-config.js';
import type { Leaf, VdevConfig, VdevErrors, VdevState } from './types.js';

export class ReplacingLeaf implements Leaf {
  readonly stale = new Set<Leaf>();

  constructor(
    public kind: 'replacing' | 'spare',
    readonly guid: string,
    readonly members: Leaf[],
    readonly memberConfigs: LeafConfig[],
    stale: Leaf[] = [],
  ) {
    if (members.length < 2 || members.length !== memberConfigs.length) throw err.inval(`${kind} vdev needs at least two members and their configs`);
    for (const s of stale) this.stale.add(s);
  }

  get path(): string {
    return this.members[0]!.path;
  }

  /** Every usable member must hold the child's data: the smallest one bounds it. */
  get size(): number {
    const sizes = this.members.filter((m) => leafUsable(m.state)).map((m) => m.size);
    return sizes.length > 0 ? Math.min(...sizes) : 0;
  }

  /** The member that serves reads, if any. */
  source(): Leaf | undefined {
    return this.members.find((m) => leafUsable(m.state) && !this.stale.has(m));
  }

  /** True when some member holds all of this child's data. */
  readable(): boolean {
    return this.source() !== undefined;
  }

  /** True while a usable member still misses data (resilver must rewrite this child). */
  needsResilver(): boolean {
    return this.members.some((m) => leafUsable(m.state) && this.stale.has(m));
  }

  get state(): VdevState {
    const usable = this.members.filter((m) => leafUsable(m.state));
    if (usable.length === 0) return this.members.every((m) => m.state === 'OFFLINE') ? 'OFFLINE' : 'UNAVAIL';
    // A replacing vdev missing its original, or still resilvering onto a
    // stale member, is DEGRADED (zpool status shows it so).
    if (usable.length < this.members.length || usable.some((m) => m.state === 'DEGRADED') || !this.readable()) return 'DEGRADED';
    return 'ONLINE';
  }

  set state(s: VdevState) {
    // Administrative changes (offline, too small) apply to every member.
    for (const m of this.members) m.state = s;
  }

  get errors(): VdevErrors {
    return (this.source() ?? this.members[0]!).errors;
  }

  async pread(offset: number, length: number): Promise<Buffer> {
    const src = this.source();
    if (!src) throw err.nxio(`${this.kind} ${this.guid}: no member holds the data yet`);
    return src.pread(offset, length);
  }

  async pwrite(offset: number, data: Buffer | Buffer[]): Promise<void> {
    const results = await Promise.allSettled(this.members.filter((m) => leafUsable(m.state)).map((m) => m.pwrite(offset, data)));
    if (!results.some((r) => r.status === 'fulfilled')) throw err.io(`${this.kind} ${this.guid}: write at ${offset} failed on every member`);
  }

  async fsync(): Promise<void> {
    const results = await Promise.allSettled(this.members.filter((m) => leafUsable(m.state)).map((m) => m.fsync()));
    if (!results.some((r) => r.status === 'fulfilled')) throw err.io(`${this.kind} ${this.guid}: flush failed on every member`);
  }

  async reopen(): Promise<VdevState> {
    for (const m of this.members) if (m.reopen) await m.reopen();
    return this.state;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.members.map((m) => m.close()));
  }

  config(): VdevConfig {
    return {
      type: this.kind,
      guid: this.guid,
      children: this.members.map((m, i) => leafConfigOf(m, this.memberConfigs[i]!, this.stale.has(m))),
    };
  }
}

/** A child the parent must not read from (all of its data may be missing). */
export function childStale(c: Leaf, resilvering: Set<Leaf>): boolean {
  return resilvering.has(c) || (c instanceof ReplacingLeaf && !c.readable());
}

/** A child a resilver read must rewrite. */
export function childNeedsResilver(c: Leaf, resilvering: Set<Leaf>): boolean {
  return resilvering.has(c) || (c instanceof ReplacingLeaf && c.needsResilver());
}

/** Config of a child of a mirror/raidz: a plain leaf, or a replacing/spare vdev. */
export function childConfig(c: Leaf, base: LeafConfig, resilvering: boolean): VdevConfig {
  return c instanceof ReplacingLeaf ? c.config() : leafConfigOf(c, base, resilvering);
}

/** The real devices under a child. */
export function realLeaves(c: Leaf): Leaf[] {
  return c instanceof ReplacingLeaf ? [...c.members] : [c];
}
