/**
 * Services: every administrative operation, as plain-JSON-in, plain-JSON-out
 * methods. The CLI calls them in-process when no daemon runs, or through the
 * daemon's control socket when one does; the HTTP API calls the same ones.
 *
 * The manager opens pools lazily from the home's pool cache and keeps them
 * open until close(); pools are opened by one process at a time (lock file
 * plus the pid recorded in the labels).
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { err } from '../errors.js';
import { Home } from './home.js';
import type { Pool, PoolOptions } from '../pool/pool.js';
import { createPool, findPools, importPool, scanDirectory, type CreateSpec, type FoundPool } from '../pool/txg/open.js';
import { poolOf } from '../pool/dataset/names.js';
import { parseSize } from '../pool/dataset/units.js';
import { Volume } from '../volume/volume.js';
import { replayIntentLog } from '../volume/replay.js';
import { clearLabels } from '../pool/txg/label.js';
import {
  splitSnap,
  findSnap,
  checkDestroySnapshots,
  snapshotUnique,
  hold as holdOp,
  release as releaseOp,
  renameSnapshot as renameSnapshotOp,
  autoSnapshots as autoSnapshotsOp,
  destroySnapshotsBeforeDatasets,
  type AutoSnapshotResult,
  type DiffRange,
} from '../pool/dataset/snapshots.js';
import { destroyAll, reclaimAll, snapshotAll, strategyFor } from '../snapshot/index.js';
import { compactChains } from '../snapshot/compact.js';
import type { BlockDevice } from '../device/block-device.js';
import type { IoAccountJson } from '../pool/io/account.js';
import type { DatasetRecord } from '../pool/dataset/directory.js';
import type { PoolDevices, PoolStatus, IostatRow } from '../pool/devices.js';

function snapshotRow(name: string, rec: DatasetRecord, index: number): DatasetRow {
  const s = rec.snapshots[index]!;
  const used = snapshotUnique(rec, index);
  const props: DatasetRow['props'] = {
    type: { value: 'snapshot', source: '-' },
    creation: { value: String(Math.floor(s.creation / 1000)), source: '-' },
    used: { value: String(used), source: '-' },
    referenced: { value: String(s.referenced), source: '-' },
    logicalreferenced: { value: String(s.logical), source: '-' },
    written: { value: String(s.written ?? 0), source: '-' },
    createtxg: { value: String(s.createTxg), source: '-' },
    guid: { value: BigInt('0x' + s.guid).toString(), source: '-' },
    userrefs: { value: String(Object.keys(s.holds ?? {}).length), source: '-' },
    clones: { value: (s.clones ?? []).join(','), source: '-' },
    volsize: { value: String(s.object ? s.object.n * s.object.bs : 0), source: '-' },
  };
  return { name, type: 'snapshot', used, avail: 0, refer: s.referenced, volsize: null, props };
}

export interface PoolRow {
  name: string;
  size: number;
  alloc: number;
  free: number;
  cap: number;
  health: string;
}

export interface DatasetRow {
  name: string;
  type: string;
  used: number;
  avail: number;
  refer: number;
  volsize: number | null;
  props: Record<string, { value: string; source: string }>;
}

export class PoolManager {
  readonly home: Home;
  private pools = new Map<string, { pool: Pool; unlock: () => void }>();
  /** Volumes handed out (for "in use" checks by the daemon). */
  readonly inUse = new Map<string, number>();

  constructor(
    home?: Home | string,
    private opts: PoolOptions = {},
  ) {
    this.home = home instanceof Home ? home : new Home(home);
  }

  openPools(): Pool[] {
    return [...this.pools.values()].map((p) => p.pool);
  }

  /** Open (or return) an imported pool by name. */
  async pool(name: string): Promise<Pool> {
    const open = this.pools.get(name);
    if (open) return open.pool;
    const entry = this.home.readCache()[name];
    if (!entry) throw err.noent(`no such pool '${name}'`);
    const unlock = this.home.lockPool(name);
    try {
      const found = (await findPools(entry.paths)).find((f) => f.guid === entry.guid);
      if (!found) throw err.nxio(`cannot open '${name}': its devices were not found (${entry.paths.join(', ')})`);
      const pool = await importPool(found, { ...this.opts, history: false, replay: replayIntentLog });
      this.pools.set(name, { pool, unlock });
      return pool;
    } catch (e) {
      unlock();
      throw e;
    }
  }

  async poolFor(dataset: string): Promise<Pool> {
    return this.pool(poolOf(dataset));
  }

  async openAll(): Promise<Pool[]> {
    const out: Pool[] = [];
    for (const name of Object.keys(this.home.readCache())) out.push(await this.pool(name));
    return out;
  }

  // ------------------------------------------------------------------ pools

  async poolCreate(name: string, spec: CreateSpec): Promise<void> {
    const cache = this.home.readCache();
    if (cache[name]) throw err.exist(`pool '${name}' already exists`);
    // A device of a pool imported here is never reused, -f or not: -f is for devices
    // of exported pools (or pools of other hosts). Without this, `pool create -f`
    // on a device of the imported pool wiped its labels and destroyed it.
    const real = (p: string) => {
      try {
        return realpathSync(resolve(p));
      } catch {
        return resolve(p);
      }
    };
    const wanted = [...spec.groups.flatMap((g) => g.paths), ...(spec.log ?? []).flatMap((g) => g.paths), ...(spec.spares ?? []), ...(spec.cache ?? [])].map(real);
    for (const [pool, entry] of Object.entries(cache)) {
      for (const p of entry.paths) {
        if (wanted.includes(real(p))) throw err.busy(`device '${p}' is part of active pool '${pool}'`);
      }
    }
    const unlock = this.home.lockPool(name);
    try {
      const pool = await createPool(name, spec, this.opts);
      this.pools.set(name, { pool, unlock });
      this.home.setCached(name, { guid: pool.guid, paths: pool.leaves().map((l) => l.path) });
    } catch (e) {
      unlock();
      throw e;
    }
  }

  async poolList(names?: string[]): Promise<PoolRow[]> {
    const all = names?.length ? names : Object.keys(this.home.readCache()).sort();
    const rows: PoolRow[] = [];
    for (const n of all) {
      const p = await this.pool(n);
      const s = { ...p.stats(), ...((p.devices as PoolDevices | null)?.space() ?? {}) };
      rows.push({ name: n, size: s.size, alloc: s.alloc, free: s.free, cap: s.size ? Math.round((s.alloc / s.size) * 100) : 0, health: s.state });
    }
    return rows;
  }

  async poolExport(name: string): Promise<void> {
    const p = await this.pool(name);
    const busy = [...this.inUse.entries()].filter(([n, c]) => c > 0 && poolOf(n) === name);
    if (busy.length) throw err.busy(`cannot export '${name}': volumes in use: ${busy.map(([n]) => n).join(', ')}`);
    await p.close('exported');
    this.pools.get(name)!.unlock();
    this.pools.delete(name);
    this.home.setCached(name, null);
  }

  async poolDestroy(name: string): Promise<void> {
    const p = await this.pool(name);
    const busy = [...this.inUse.entries()].filter(([n, c]) => c > 0 && poolOf(n) === name);
    if (busy.length) throw err.busy(`cannot destroy '${name}': volumes in use: ${busy.map(([n]) => n).join(', ')}`);
    await p.close('destroyed');
    // Wipe the labels so the devices can be reused without -f.
    const { FileLeaf } = await import('../pool/vdev/leaf-file.js');
    for (const path of this.home.readCache()[name]?.paths ?? []) {
      try {
        const leaf = await FileLeaf.open(path, 'wipe');
        await clearLabels(leaf);
        await leaf.close();
      } catch {
        /* a missing device has no label to wipe */
      }
    }
    this.pools.get(name)!.unlock();
    this.pools.delete(name);
    this.home.setCached(name, null);
  }

  /** `pool import [-d DIR]` with no name: what could be imported. */
  async poolScan(dir?: string): Promise<FoundPool[]> {
    const d = resolve(dir ?? this.home.devicesDir);
    const cached = this.home.readCache();
    return (await findPools(await scanDirectory(d))).filter((f) => !Object.values(cached).some((c) => c.guid === f.guid));
  }

  async poolImport(nameOrGuid: string, dir?: string, newName?: string): Promise<void> {
    const found = (await this.poolScan(dir)).filter((f) => f.name === nameOrGuid || f.guid === nameOrGuid);
    if (found.length === 0) throw err.noent(`cannot import '${nameOrGuid}': no such pool available in ${resolve(dir ?? this.home.devicesDir)}`);
    if (found.length > 1) throw err.inval(`cannot import '${nameOrGuid}': more than one matching pool; import by guid (${found.map((f) => f.guid).join(', ')})`);
    const f = found[0]!;
    if (f.state === 'destroyed') throw err.noent(`cannot import '${nameOrGuid}': pool was destroyed`);
    if (newName) throw err.notsup('importing under a new name is not supported yet');
    if (this.home.readCache()[f.name]) throw err.exist(`cannot import '${f.name}': a pool with that name is already imported`);
    const unlock = this.home.lockPool(f.name);
    try {
      const pool = await importPool(f, { ...this.opts, replay: replayIntentLog });
      this.pools.set(f.name, { pool, unlock });
      this.home.setCached(f.name, { guid: pool.guid, paths: pool.leaves().map((l) => l.path) });
    } catch (e) {
      unlock();
      throw e;
    }
  }

  // --------------------------------------------------------------- datasets

  async create(name: string, o: { volsize?: string; sparse?: boolean; blocksize?: string; props?: Record<string, string>; command?: string }): Promise<void> {
    const pool = await this.poolFor(name);
    const props = { ...(o.props ?? {}) };
    if (o.volsize !== undefined) props['volsize'] = String(parseSize(o.volsize));
    if (o.blocksize !== undefined) props['volblocksize'] = o.blocksize;
    await pool.createDataset(name, o.volsize !== undefined ? 'volume' : 'filesystem', props, { sparse: o.sparse, command: o.command });
  }

  async destroy(name: string, o: { recursive?: boolean; force?: boolean; command?: string } = {}): Promise<string[]> {
    const pool = await this.poolFor(name);
    const targets = [name, ...pool.dir.descendants(name)];
    const busy = targets.filter((n) => (this.inUse.get(n) ?? 0) > 0);
    if (busy.length && !o.force) throw err.busy(`cannot destroy '${name}': volume is in use (${busy.join(', ')}); use -f to force`);
    // Many snapshots: free them in batches first so one huge txg does not stall other writers.
    await destroySnapshotsBeforeDatasets(pool, name, !!o.recursive, o.command);
    return pool.destroyDataset(name, { recursive: o.recursive, command: o.command });
  }

  async rename(from: string, to: string, command?: string): Promise<void> {
    if (from.includes('@')) {
      const pool = await this.poolFor(from);
      if (to.includes('@') && poolOf(to) !== pool.name) throw err.inval(`cannot rename to '${to}': snapshots cannot move between pools`);
      return renameSnapshotOp(pool, from, to, command);
    }
    if (poolOf(from) !== poolOf(to)) throw err.inval(`cannot rename to '${to}': datasets cannot move between pools`);
    const pool = await this.poolFor(from);
    if ((this.inUse.get(from) ?? 0) > 0) throw err.busy(`cannot rename '${from}': volume is in use`);
    await pool.renameDataset(from, to, command);
  }

  async set(name: string, props: Record<string, string>, command?: string): Promise<void> {
    const pool = await this.poolFor(name);
    await pool.setProps(name, props, command);
  }

  async inherit(name: string, prop: string, command?: string): Promise<void> {
    const pool = await this.poolFor(name);
    await pool.inheritProp(name, prop, command);
  }

  /** Datasets as rows (for list and get). `names` empty = every pool. */
  async datasets(names: string[], recursive: boolean, depth?: number): Promise<DatasetRow[]> {
    const rows: DatasetRow[] = [];
    const roots = names.length ? names : Object.keys(this.home.readCache()).sort();
    const seen = new Set<string>();
    for (const root of roots) {
      const pool = await this.poolFor(root);
      pool.dir.get(root);
      const list = names.length && !recursive ? [root] : [root, ...pool.dir.descendants(root)];
      for (const n of list) {
        if (seen.has(n)) continue;
        if (depth != null && n.split('/').length - root.split('/').length > depth) continue;
        seen.add(n);
        const info = pool.datasetInfo(n);
        const props: DatasetRow['props'] = {};
        for (const p of pool.getAll(n)) props[p.property] = { value: p.value, source: p.source };
        rows.push({ name: n, type: info.type, used: info.used, avail: info.avail, refer: info.refer, volsize: info.volsize ?? null, props });
      }
    }
    return rows;
  }

  async history(name: string) {
    return (await this.pool(name)).history();
  }

  async status(name?: string) {
    const names = name ? [name] : Object.keys(this.home.readCache()).sort();
    const out = [];
    for (const n of names) {
      const p = await this.pool(n);
      const tree = p.vdevs;
      const describe = (cfg: import('../pool/vdev/types.js').VdevConfig): unknown => {
        if (cfg.type === 'file' || cfg.type === 'disk') {
          const leaf = tree.findLeaf(cfg.guid);
          return { name: cfg.path, state: leaf?.state ?? 'UNAVAIL', errors: leaf?.errors ?? { read: 0, write: 0, cksum: 0 } };
        }
        const top = 'id' in cfg && cfg.id !== undefined ? tree.tops[cfg.id] : undefined;
        const label = cfg.type === 'raidz' ? `raidz${cfg.nparity}-${cfg.id}` : `${cfg.type}-${'id' in cfg ? cfg.id : ''}`;
        return { name: label, state: top?.state() ?? 'ONLINE', errors: { read: 0, write: 0, cksum: 0 }, children: (cfg as { children: import("../pool/vdev/types.js").VdevConfig[] }).children.map(describe) };
      };
      const cfg = tree.config();
      out.push({
        name: n,
        state: tree.state(),
        txg: p.txg.synced,
        suspended: p.txg.suspended?.message ?? null,
        config: cfg.children.map(describe),
        spares: (cfg.spares ?? []).map(describe),
        errors: p.io.stats.cksumErrors,
      });
    }
    return out;
  }

  // ---------------------------------------------- devices, scrub, resilver

  private async devs(name: string): Promise<PoolDevices> {
    const p = await this.pool(name);
    if (!p.devices) throw err.inval(`pool '${name}' has no device manager`);
    return p.devices as PoolDevices;
  }

  /** The pool cache names every device (spares too) so the next open finds them all. */
  private recache(name: string): void {
    const p = this.pools.get(name)?.pool;
    if (!p) return;
    const paths = [...new Set([...p.leaves(), ...p.vdevs.spares, ...p.vdevs.l2cache].map((l) => l.path))];
    this.home.setCached(name, { guid: p.guid, paths });
  }

  async poolScrub(name: string, o: { op?: 'start' | 'pause' | 'stop'; wait?: boolean } = {}): Promise<void> {
    const d = await this.devs(name);
    await d.scrub(o.op ?? 'start');
    if (o.wait && (o.op ?? 'start') === 'start') await d.wait();
  }

  /** `pool wait`: until no scrub or resilver runs. */
  async poolWait(name: string): Promise<void> {
    await (await this.devs(name)).wait();
  }

  async poolAttach(name: string, dev: string, neu: string, o: { force?: boolean; wait?: boolean } = {}): Promise<void> {
    const d = await this.devs(name);
    await d.attachDevice(dev, neu, !!o.force);
    this.recache(name);
    if (o.wait) await d.wait();
  }

  async poolDetach(name: string, dev: string): Promise<void> {
    await (await this.devs(name)).detachDevice(dev);
    this.recache(name);
  }

  async poolReplace(name: string, old: string, neu: string | null, o: { force?: boolean; wait?: boolean } = {}): Promise<void> {
    const d = await this.devs(name);
    await d.replaceDevice(old, neu ?? undefined, !!o.force);
    this.recache(name);
    if (o.wait) {
      await d.wait();
      this.recache(name);
    }
  }

  async poolOffline(name: string, dev: string, o: { temporary?: boolean } = {}): Promise<void> {
    await (await this.devs(name)).offlineDevice(dev, !!o.temporary);
  }

  async poolOnline(name: string, dev: string, o: { wait?: boolean } = {}): Promise<void> {
    const d = await this.devs(name);
    await d.onlineDevice(dev);
    if (o.wait) await d.wait();
  }

  async poolClear(name: string, dev?: string | null, o: { wait?: boolean } = {}): Promise<void> {
    const d = await this.devs(name);
    await d.clearDevice(dev ?? undefined);
    if (o.wait) await d.wait();
  }

  async poolStatus(name?: string | null, verbose = false): Promise<PoolStatus[]> {
    const names = name ? [name] : Object.keys(this.home.readCache()).sort();
    const out: PoolStatus[] = [];
    for (const n of names) out.push((await this.devs(n)).status(verbose));
    return out;
  }

  async poolIostat(names: string[] = [], o: { verbose?: boolean } = {}): Promise<{ pool: string; time: number; rows: IostatRow[] }[]> {
    const all = names.length ? names : Object.keys(this.home.readCache()).sort();
    const out = [];
    for (const n of all) {
      const rows = (await this.devs(n)).iostat();
      out.push({ pool: n, time: Date.now(), rows: o.verbose ? rows : rows.slice(0, 1) });
    }
    return out;
  }

  // -------------------------------------------------------------- snapshots

  /** `snapshot [-r] VOL@SNAP...`: atomic, one txg for all names. */
  async snapshot(names: string[], o: { recursive?: boolean; command?: string } = {}): Promise<string[]> {
    if (names.length === 0) throw err.inval('snapshot: no names given');
    const pool = await this.poolFor(names[0]!);
    const all: string[] = [];
    for (const full of names) {
      if (poolOf(full) !== pool.name) throw err.inval(`cannot snapshot '${full}': snapshots in one call must be in one pool`);
      const [ds, snap] = splitSnap(full);
      all.push(full);
      if (o.recursive) for (const d of pool.dir.descendants(ds)) all.push(`${d}@${snap}`);
    }
    await snapshotAll(pool, all, o.command);
    // row volumes with compactdepth: merge the oldest layers past that depth.
    await compactChains(pool, all.map((n) => splitSnap(n)[0]));
    return all;
  }

  /**
   * `snapshot --auto [DATASET...]` (cron) and the daemon's scheduler: apply
   * each dataset's `snapshot:policy` at time `now` (ms; default the clock).
   * No datasets: every imported pool.
   */
  async autoSnapshot(datasets: string[] = [], o: { now?: number; dryRun?: boolean } = {}): Promise<AutoSnapshotResult> {
    const now = o.now ?? Date.now();
    const byPool = new Map<string, string[]>();
    if (datasets.length) for (const d of datasets) byPool.set(poolOf(d), [...(byPool.get(poolOf(d)) ?? []), d]);
    else for (const p of Object.keys(this.home.readCache()).sort()) byPool.set(p, []);
    const out: AutoSnapshotResult = { taken: [], destroyed: [], kept: [] };
    for (const [p, roots] of byPool) {
      const r = await autoSnapshotsOp(await this.pool(p), roots, now, { dryRun: o.dryRun, ops: { snapshot: snapshotAll, destroy: destroyAll } });
      if (!o.dryRun) r.destroyed.push(...(await compactChains(await this.pool(p), r.taken.map((n) => splitSnap(n)[0]))));
      out.taken.push(...r.taken);
      out.destroyed.push(...r.destroyed);
      out.kept.push(...r.kept);
    }
    return out;
  }

  /** Expand `vol@a%c` (range, inclusive), `vol@a,b` (list) and `vol@%` (all). */
  async expandSnapshots(spec: string): Promise<string[]> {
    const pool = await this.poolFor(spec);
    const [ds, rest] = splitSnap(spec);
    const rec = pool.dir.get(ds);
    const names = rec.snapshots.map((s) => s.name);
    const out: string[] = [];
    for (const part of rest.split(',')) {
      if (part.includes('%')) {
        const [a, b] = part.split('%') as [string, string];
        const i = a ? names.indexOf(a) : 0;
        const j = b ? names.indexOf(b) : names.length - 1;
        if (i < 0 || j < 0) throw err.noent(`snapshot range '${ds}@${part}': no such snapshot`);
        for (let k = i; k <= j; k++) out.push(`${ds}@${names[k]}`);
      } else {
        if (!names.includes(part)) throw err.noent(`could not find any snapshots to destroy; check snapshot names ('${ds}@${part}')`);
        out.push(`${ds}@${part}`);
      }
    }
    return [...new Set(out)];
  }

  /** `destroy [-R] [-n] vol@snap...`: returns what goes and the space it frees. */
  async destroySnapshots(spec: string, o: { recursiveClones?: boolean; dryRun?: boolean; force?: boolean; command?: string } = {}): Promise<{ destroyed: string[]; reclaim: number }> {
    const pool = await this.poolFor(spec);
    const snaps = await this.expandSnapshots(spec);
    // Every refusal is checked before anything is destroyed; clones come back dependents-first.
    const clones = checkDestroySnapshots(pool, snaps, !!o.recursiveClones);
    const reclaim = await reclaimAll(pool, snaps);
    if (o.dryRun) return { destroyed: [...clones, ...snaps], reclaim };
    const busy = [...clones, ...snaps].filter((n) => (this.inUse.get(n) ?? 0) > 0);
    if (busy.length && !o.force) throw err.busy(`cannot destroy: in use (${busy.join(', ')}); use -f to force`);
    for (const c of clones) if (pool.dir.has(c)) await pool.destroyDataset(c, { recursive: true, command: o.command });
    await destroyAll(pool, snaps, o.command);
    return { destroyed: [...clones, ...snaps], reclaim };
  }

  async rollback(full: string, o: { recursive?: boolean; recursiveClones?: boolean; force?: boolean; command?: string } = {}): Promise<void> {
    const pool = await this.poolFor(full);
    const [ds] = splitSnap(full);
    if ((this.inUse.get(ds) ?? 0) > 0 && !o.force) throw err.busy(`cannot rollback '${ds}': volume is in use (exported); use -f to force`);
    const { rec, index } = findSnap(pool, full);
    if (o.recursiveClones) {
      // Refusals (held snapshots, here or in dependent clones) first, then the clones, dependents first.
      const later = rec.snapshots.slice(index + 1).map((s) => `${splitSnap(full)[0]}@${s.name}`);
      for (const c of checkDestroySnapshots(pool, later, true)) if (pool.dir.has(c)) await pool.destroyDataset(c, { recursive: true });
    }
    await strategyFor(pool, full).rollback(pool, full, { destroyLater: !!(o.recursive || o.recursiveClones), command: o.command });
  }

  async rollbackToOrigin(vol: string, o: { force?: boolean; command?: string } = {}): Promise<void> {
    const pool = await this.poolFor(vol);
    const rec = pool.dir.get(vol);
    if (!rec.origin) throw err.inval(`'${vol}' is not a clone`);
    if ((this.inUse.get(vol) ?? 0) > 0 && !o.force) throw err.busy(`cannot reset '${vol}': volume is in use (exported); use -f to force`);
    await strategyFor(pool, vol).resetToOrigin(pool, vol, o.command);
  }

  async clone(full: string, targets: string[], props: Record<string, string> = {}, command?: string): Promise<void> {
    const pool = await this.poolFor(full);
    for (const t of targets) if (poolOf(t) !== pool.name) throw err.inval(`cannot clone '${full}' to '${t}': clones must be in the same pool`);
    await strategyFor(pool, full).clone(pool, full, targets, props, command);
  }

  async promote(name: string, command?: string): Promise<void> {
    const pool = await this.poolFor(name);
    await strategyFor(pool, name).promote(pool, name, command);
  }

  async hold(tag: string, snaps: string[], command?: string): Promise<void> {
    if (!snaps.length) throw err.inval('hold: no snapshots given');
    await holdOp(await this.poolFor(snaps[0]!), tag, snaps, command);
  }

  async release(tag: string, snaps: string[], command?: string): Promise<void> {
    if (!snaps.length) throw err.inval('release: no snapshots given');
    await releaseOp(await this.poolFor(snaps[0]!), tag, snaps, command);
  }

  async holds(snaps: string[]): Promise<{ name: string; tag: string; timestamp: number }[]> {
    const out: { name: string; tag: string; timestamp: number }[] = [];
    for (const s of snaps) {
      const { snap } = findSnap(await this.poolFor(s), s);
      for (const [tag, t] of Object.entries(snap.holds ?? {})) out.push({ name: s, tag, timestamp: t });
    }
    return out;
  }

  /** Device-level I/O and write amplification of volumes (all of every pool when none named), measured since import; `reset` zeroes them. */
  async amplification(names: string[] = [], o: { reset?: boolean } = {}): Promise<({ name: string } & IoAccountJson)[]> {
    const out: ({ name: string } & IoAccountJson)[] = [];
    const vols: [Pool, string][] = [];
    if (names.length) for (const n of names) vols.push([await this.poolFor(n), n]);
    else for (const p of Object.keys(this.home.readCache()).sort()) {
      const pool = await this.pool(p);
      for (const n of pool.list()) vols.push([pool, n]);
    }
    // Device writes are counted when their txg syncs: sync first, so the numbers cover every write so far.
    for (const pool of new Set(vols.map(([p]) => p))) await pool.txg.syncNow();
    for (const [pool, n] of vols) {
      const rec = pool.dir.get(n);
      if (rec.type !== 'volume') {
        if (names.length) throw err.inval(`'${n}' is not a volume`);
        continue;
      }
      const acct = pool.account(rec.id);
      out.push({ name: n, ...acct.toJson() });
      if (o.reset) acct.reset();
    }
    return out;
  }

  async diff(from: string, to?: string): Promise<DiffRange[]> {
    const pool = await this.poolFor(from);
    return strategyFor(pool, from).diff(pool, from, to ?? splitSnap(from)[0]);
  }

  /** Snapshot rows for `list -t snapshot`. */
  async snapshotRows(names: string[], recursive: boolean): Promise<DatasetRow[]> {
    const rows: DatasetRow[] = [];
    const roots = names.length ? names : Object.keys(this.home.readCache()).sort();
    for (const root of roots) {
      const pool = await this.poolFor(root);
      if (root.includes('@')) {
        const { rec, index } = findSnap(pool, root);
        rows.push(snapshotRow(root, rec, index));
        continue;
      }
      pool.dir.get(root);
      const list = names.length && !recursive ? [root] : [root, ...pool.dir.descendants(root)];
      for (const ds of list) {
        const rec = pool.dir.get(ds);
        rec.snapshots.forEach((_, i) => rows.push(snapshotRow(`${ds}@${rec.snapshots[i]!.name}`, rec, i)));
      }
    }
    return rows;
  }

  async openSnapshot(name: string): Promise<{ device: BlockDevice; release: () => void }> {
    const pool = await this.poolFor(name);
    return { device: strategyFor(pool, name).openSnapshot(pool, name), release: this.markInUse(name) };
  }

  // ------------------------------------------------------------------ volumes

  /** Open a volume as a BlockDevice (counted as in use until released). */
  async openVolume(name: string, opts: { readOnly?: boolean } = {}): Promise<{ volume: Volume; release: () => void }> {
    const pool = await this.poolFor(name);
    return { volume: Volume.open(pool, name, opts), release: this.markInUse(name) };
  }

  /** Count `name` as in use (destroy/rollback refuse it) until the returned function is called; calling it twice is harmless. */
  private markInUse(name: string): () => void {
    this.inUse.set(name, (this.inUse.get(name) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse.set(name, Math.max(0, (this.inUse.get(name) ?? 1) - 1));
    };
  }

  /** Close every pool cleanly (labels stay 'active': the pools remain imported). */
  async close(): Promise<void> {
    const errors: unknown[] = [];
    for (const [, { pool, unlock }] of this.pools) {
      try {
        await pool.close('active');
      } catch (e) {
        errors.push(e);
      }
      unlock();
    }
    this.pools.clear();
    if (errors.length) throw errors[0];
  }
}
