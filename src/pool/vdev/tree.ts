/**
 * The device tree of a pool: opens leaves and builds top-level vdevs from a
 * VdevRootConfig, writes the config back, and aggregates state.
 *
 * Pool state (ZFS's vdev_root_state_change): the top-levels are striped, so
 * the pool has no redundancy across them — one data top-level that is not
 * usable (beyond its own redundancy) makes the pool UNAVAIL; any degraded
 * top-level makes it DEGRADED. A missing separate log device only degrades
 * the pool (ZFS imports with -m), as do missing spares or cache devices.
 *
 * Opening never fails because a device is missing: such leaves are UNAVAIL,
 * `missing()` names them, and `assertUsable()` refuses (ENXIO, naming them)
 * when they are beyond redundancy — so `pool import` can report exactly what
 * is missing and write nothing.
 */
import { err } from '../../errors.js';
import { AbstractLeaf, leafUsable, type LeafPolicy } from './leaf-base.js';
import { FileLeaf } from './leaf-file.js';
import { isLeafConfig, leafConfigOf, type LeafConfig } from './leaf-config.js';
import type { VdevEvents } from './child-io.js';
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import { ReplacingLeaf } from './replacing.js';
import { SingleVdev } from './single.js';
import type { Leaf, TopVdev, VdevConfig, VdevRootConfig, VdevState } from './types.js';

export interface OpenTreeOptions {
  /** Open devices read-only; top-levels never write (no self-heal either). */
  readOnly?: boolean;
  leafPolicy?: LeafPolicy;
  /** Path to open for a leaf (e.g. `pool import -d DIR` found it elsewhere); default cfg.path. */
  resolvePath?(cfg: LeafConfig): string;
  /** Open one leaf; default FileLeaf.openOrUnavail (never throws for a missing device). Tests inject fault leaves here. */
  openLeaf?(cfg: LeafConfig, path: string): Promise<Leaf>;
  /** Check an opened leaf is the device the config means (label pool guid/vdev guid); false -> closed and UNAVAIL. */
  identify?(leaf: Leaf, cfg: LeafConfig): Promise<boolean>;
  events?: VdevEvents;
}

export interface MissingDevice {
  path: string;
  guid: string;
  state: VdevState;
  /** Top-level id, or 'spare'/'cache'. */
  top: number | 'spare' | 'cache';
  /** Why it could not be opened, when known. */
  reason?: string;
}

export class VdevTree {
  private constructor(
    readonly guid: string,
    readonly tops: TopVdev[],
    readonly spares: Leaf[],
    readonly l2cache: Leaf[],
    private readonly auxConfigs: { spares: LeafConfig[]; l2cache: LeafConfig[] },
    private readonly logIds: Set<number>,
    private readonly reasons: Map<Leaf, string>,
    /** The options the tree was opened with (device management builds new top-levels with them). */
    readonly options: OpenTreeOptions,
  ) {}

  /** Leaves offlined with `offline -t`: not persisted as offline in the config. */
  readonly temporarilyOffline = new Set<Leaf>();

  /** Open every device named by `root`. Missing devices become UNAVAIL leaves; see assertUsable(). */
  static async open(root: VdevRootConfig, opts: OpenTreeOptions = {}): Promise<VdevTree> {
    const reasons = new Map<Leaf, string>();
    const opened = new Set<Leaf>();
    const all: Leaf[] = [];
    const openLeaf = async (cfg: LeafConfig): Promise<Leaf> => {
      const path = opts.resolvePath?.(cfg) ?? cfg.path;
      const leaf = opts.openLeaf
        ? await opts.openLeaf(cfg, path)
        : await FileLeaf.openOrUnavail(path, cfg.guid, { readOnly: opts.readOnly, ...opts.leafPolicy });
      all.push(leaf);
      if (leaf instanceof FileLeaf && leaf.openError) reasons.set(leaf, leaf.openError.message);
      if (leafUsable(leaf.state) && opts.identify && !(await opts.identify(leaf, cfg))) {
        await leaf.close();
        leaf.state = 'UNAVAIL';
        reasons.set(leaf, `${path} does not carry this pool's label for device ${cfg.guid}`);
      }
      // An administratively offlined device stays offline across import.
      if (cfg.offline) leaf.state = 'OFFLINE';
      if (leafUsable(leaf.state)) opened.add(leaf);
      return leaf;
    };
    try {
      return await VdevTree.build(root, opts, openLeaf, opened, reasons, all);
    } catch (e) {
      // A config we cannot build (corrupt, unsupported) leaves nothing open.
      await Promise.allSettled(all.map((l) => l.close()));
      throw e;
    }
  }

  private static async build(
    root: VdevRootConfig,
    opts: OpenTreeOptions,
    openLeaf: (cfg: LeafConfig) => Promise<Leaf>,
    opened: Set<Leaf>,
    reasons: Map<Leaf, string>,
    all: Leaf[],
  ): Promise<VdevTree> {

    const tops: TopVdev[] = [];
    const logIds = new Set<number>();
    const used = new Set<number>();
    for (const [i, c] of root.children.entries()) {
      const id = 'id' in c && c.id !== undefined ? c.id : i;
      if (used.has(id)) throw err.corrupt(`device tree: duplicate top-level id ${id}`);
      used.add(id);
      const top = await openTop(c, id, openLeaf, opts);
      // Top-levels refuse children too small for their address space.
      for (const l of top.leaves()) if (opened.has(l) && !leafUsable(l.state)) reasons.set(l, `${l.path} is smaller than its place in the pool`);
      tops.push(top);
      if ('log' in c && c.log) logIds.add(id);
    }
    const spareCfgs = (root.spares ?? []).filter(isLeafConfig);
    const cacheCfgs = (root.l2cache ?? []).filter(isLeafConfig);
    // A hot spare in use is also a member of a spare/replacing vdev: one device, one leaf.
    const inTops = new Map(tops.flatMap((t) => t.leaves()).map((l) => [l.guid, l]));
    const spares = await Promise.all(spareCfgs.map((c) => inTops.get(c.guid) ?? openLeaf(c)));
    const l2cache = await Promise.all(cacheCfgs.map(openLeaf));
    // Only now, with the tree's own adjustments (too small, offline) done,
    // do state changes start to be reported.
    for (const l of all) watchLeaf(l, opts);
    return new VdevTree(root.guid, tops, spares, l2cache, { spares: spareCfgs, l2cache: cacheCfgs }, logIds, reasons, opts);
  }

  /** The top-level with this id (the first field of a DVA). */
  top(id: number): TopVdev {
    const t = this.tops.find((x) => x.id === id);
    if (!t) throw err.inval(`no top-level vdev ${id}`);
    return t;
  }

  /** Forward a device's state changes to events.onStateChange (for devices added by attach/replace). */
  watch(leaf: Leaf): void {
    watchLeaf(leaf, this.options);
  }

  /** Config entry of a spare or cache device, by leaf. */
  auxConfigOf(leaf: Leaf): LeafConfig | undefined {
    const i = this.spares.indexOf(leaf);
    if (i >= 0) return this.auxConfigs.spares[i];
    const j = this.l2cache.indexOf(leaf);
    return j >= 0 ? this.auxConfigs.l2cache[j] : undefined;
  }

  /** Top-levels that hold pool data (not separate log devices). */
  dataTops(): TopVdev[] {
    return this.tops.filter((t) => !this.logIds.has(t.id));
  }

  isLog(t: TopVdev): boolean {
    return this.logIds.has(t.id);
  }

  /** Pool state from the top-levels. */
  state(): VdevState {
    let degraded = false;
    for (const t of this.tops) {
      const s = t.state();
      if (s === 'ONLINE') continue;
      if (s === 'DEGRADED' || this.logIds.has(t.id)) degraded = true;
      else return 'UNAVAIL';
    }
    return degraded ? 'DEGRADED' : 'ONLINE';
  }

  /** Every leaf holding pool data or log records (not spares, not cache). */
  leaves(): Leaf[] {
    return this.tops.flatMap((t) => t.leaves());
  }

  /** Leaf by guid or path, among data, log, spare and cache devices. */
  findLeaf(guidOrPath: string): Leaf | undefined {
    return [...this.leaves(), ...this.spares, ...this.l2cache].find((l) => l.guid === guidOrPath || l.path === guidOrPath);
  }

  /** The top-level a leaf belongs to. */
  topOf(leaf: Leaf): TopVdev | undefined {
    return this.tops.find((t) => t.leaves().includes(leaf));
  }

  /** Devices that are not usable (missing, faulted, removed, offline), by path. */
  missing(): MissingDevice[] {
    const out: MissingDevice[] = [];
    const add = (l: Leaf, top: MissingDevice['top']): void => {
      if (leafUsable(l.state)) return;
      const m: MissingDevice = { path: l.path, guid: l.guid, state: l.state, top };
      const r = this.reasons.get(l);
      if (r !== undefined) m.reason = r;
      out.push(m);
    };
    for (const t of this.tops) for (const l of t.leaves()) add(l, t.id);
    for (const l of this.spares) add(l, 'spare');
    for (const l of this.l2cache) add(l, 'cache');
    return out;
  }

  /** Throw ENXIO naming the missing devices when a data top-level is beyond its redundancy. */
  assertUsable(poolName = 'pool'): void {
    const dead = this.dataTops().filter((t) => t.state() === 'UNAVAIL' || t.state() === 'OFFLINE' || t.state() === 'FAULTED' || t.state() === 'REMOVED');
    if (dead.length === 0) return;
    const names = dead.flatMap((t) => t.leaves().filter((l) => !leafUsable(l.state)).map((l) => `${l.path} (${l.state})`));
    throw err.nxio(`cannot open '${poolName}': not enough devices; missing or unusable: ${names.join(', ')}`);
  }

  /** Make every completed write durable on every usable device. Throws EIO if a data top-level cannot be flushed. */
  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.tops.map((t) => t.flush()));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' && !this.logIds.has(this.tops[i]!.id) ? [r.reason as Error] : []));
    if (failed.length > 0) throw err.io(`flush failed: ${failed.map((e) => e.message).join('; ')}`, failed[0]);
  }

  config(): VdevRootConfig {
    // A temporary offline does not survive export/import (zpool offline -t).
    const temp = new Set([...this.temporarilyOffline].map((l) => l.guid));
    const scrub = (c: VdevConfig): VdevConfig => {
      if (isLeafConfig(c)) {
        if (!temp.has(c.guid)) return c;
        // Back at the next import, but it missed every write while away: it opens stale
        // (reads avoid it) and the engine resilvers it from its DTL.
        const { offline: _o, ...rest } = c;
        return { ...rest, resilvering: true };
      }
      return { ...c, children: c.children.map(scrub) } as VdevConfig;
    };
    const children = this.tops.map((t) => scrub(t.config()));
    const root: VdevRootConfig = { type: 'root', guid: this.guid, children };
    if (this.spares.length > 0) root.spares = this.spares.map((l, i) => leafConfigOf(l, this.auxConfigs.spares[i]!, false));
    if (this.l2cache.length > 0) root.l2cache = this.l2cache.map((l, i) => leafConfigOf(l, this.auxConfigs.l2cache[i]!, false));
    return root;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.tops.map((t) => t.close()), ...[...this.spares, ...this.l2cache].map((l) => l.close())]);
  }
}

function watchLeaf(leaf: Leaf, opts: OpenTreeOptions): void {
  const cb = opts.events?.onStateChange;
  if (leaf instanceof AbstractLeaf && cb) leaf.onStateChange = (l, from, to) => cb(l, from, to);
}

async function openTop(
  c: VdevConfig,
  id: number,
  openLeaf: (cfg: LeafConfig) => Promise<Leaf>,
  opts: OpenTreeOptions,
): Promise<TopVdev> {
  const events = opts.events ?? {};
  // A child is a leaf or a replacing/spare vdev over leaves.
  const openChild = async (x: VdevConfig): Promise<{ leaf: Leaf; cfg: LeafConfig }> => {
    if (isLeafConfig(x)) return { leaf: await openLeaf(x), cfg: x };
    if (x.type === 'replacing' || x.type === 'spare') {
      const memberCfgs = x.children.map((m) => {
        if (!isLeafConfig(m)) throw err.notsup(`${x.type} ${x.guid}: nested '${m.type}' vdevs are not supported`);
        return m;
      });
      const members = await Promise.all(memberCfgs.map(openLeaf));
      const stale = members.filter((_, i) => memberCfgs[i]!.resilvering);
      return { leaf: new ReplacingLeaf(x.type, x.guid, members, memberCfgs, stale), cfg: memberCfgs[0]! };
    }
    throw err.notsup(`top-level ${id}: nested '${x.type}' vdevs are not supported`);
  };
  switch (c.type) {
    case 'file':
    case 'disk':
      return new SingleVdev(await openLeaf(c), { id, config: c, events, readOnly: opts.readOnly });
    case 'replacing':
    case 'spare': {
      const { leaf, cfg } = await openChild(c);
      return new SingleVdev(leaf, { id, config: { ...cfg, id, ...(c.asize !== undefined ? { asize: c.asize } : {}) }, events, readOnly: opts.readOnly });
    }
    case 'mirror':
    case 'raidz': {
      const kids = await Promise.all(c.children.map(openChild));
      const common = { id, guid: c.guid, asize: c.asize, childConfigs: kids.map((k) => k.cfg), events, readOnly: opts.readOnly, log: c.log };
      const leaves = kids.map((k) => k.leaf);
      if (c.type === 'mirror') {
        if (leaves.length < 1) throw err.corrupt(`mirror ${id}: no children`);
        return new MirrorVdev(leaves, common);
      }
      return new RaidzVdev(leaves, { ...common, nparity: c.nparity });
    }
    default:
      throw err.notsup(`top-level vdev of type '${(c as { type: string }).type}' is not supported`);
  }
}
