/**
 * Creating and importing pools (ZFS's spa_create / spa_import).
 *
 * Import picks, among the uberblocks of this pool (pool guid matches) on
 * every device, the newest whose checksum verifies and whose MOS root block
 * reads and verifies; older ones are the fallback. It then rebuilds the
 * allocators by replaying the space map log and claiming every metadata
 * block reachable from the MOS root, and marks the labels active with this
 * process's pid (the pool's ownership lock).
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { err } from '../../errors.js';
import { SpaceAllocator } from '../space/allocator.js';
import { decodeSpaceMapBlock, replaySpaceMap, type SpaceRecord } from '../space/space-map.js';
import { Directory, type DirectoryJson } from '../dataset/directory.js';
import { validatePoolName } from '../dataset/names.js';
import { byteObjectFromJson, readByteObject } from '../object/byte-object.js';
import { dnodeFromJson } from '../object/dnode.js';
import { walkDeadlistStorage } from '../dataset/deadlist.js';
import { ObjectState } from '../object/object-state.js';
import { BlockTree } from '../object/tree.js';
import { Pool, type PoolOptions } from '../pool.js';
import { FileLeaf, createSparseFile } from '../vdev/leaf-file.js';
import { VdevTree } from '../vdev/tree.js';
import { MIN_DEVICE_SIZE, type VdevConfig, type VdevRootConfig } from '../vdev/types.js';
import { clearLabels, invalidateNewer, readLabels, type LabelConfig } from './label.js';
import type { MosRootJson } from './sync.js';
import type { Uberblock } from './uberblock.js';
import type { BlockPointer } from '../blkptr.js';
import { readChain } from '../intent-log/zil.js';
import type { LogRecord } from '../intent-log/log-block.js';
import type { VdevEvents } from '../vdev/child-io.js';
import { PoolDevices } from '../devices.js';
import { emptyScanPersist } from '../scan/state.js';

const GROUP_TYPES = ['single', 'mirror', 'raidz'] as const;

export interface VdevGroupSpec {
  type: (typeof GROUP_TYPES)[number];
  nparity?: 1 | 2 | 3;
  paths: string[];
}

export interface CreateSpec {
  groups: VdevGroupSpec[];
  spares?: string[];
  cache?: string[];
  log?: VdevGroupSpec[];
  /** Create missing device files sparse with this size. */
  createSize?: number;
  force?: boolean;
}

function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuse a pool whose labels say another live process on this host has it open. */
function assertNotInUse(cfg: LabelConfig): void {
  if (cfg.state === 'active' && cfg.hostname === hostname() && cfg.pid && cfg.pid !== process.pid && pidAlive(cfg.pid)) {
    throw err.busy(`pool '${cfg.name}' is in use by process ${cfg.pid}`);
  }
}

export async function createPool(name: string, spec: CreateSpec, opts: PoolOptions = {}): Promise<Pool> {
  validatePoolName(name);
  const all = [...spec.groups.flatMap((g) => g.paths), ...(spec.log ?? []).flatMap((g) => g.paths), ...(spec.spares ?? []), ...(spec.cache ?? [])].map((p) => resolve(p));
  if (spec.groups.length === 0 || spec.groups.some((g) => g.paths.length === 0)) throw err.inval('pool create: no devices given');
  const dup = all.find((p, i) => all.indexOf(p) !== i);
  if (dup) throw err.inval(`device '${dup}' is named more than once`);
  for (const g of [...spec.groups, ...(spec.log ?? [])]) {
    // Untyped callers (JavaScript, JSON) get here too: an unknown type must not fall through
    // to the raidz branch below, nor a raidz be built with a parity it cannot have. (A
    // parity given with a mirror or single group means nothing and is ignored, as it was.)
    if (!GROUP_TYPES.includes(g.type)) throw err.inval(`unknown vdev group type '${String(g.type)}' (expected ${GROUP_TYPES.join(', ')})`);
    if (g.type === 'raidz' && g.nparity !== undefined && !([1, 2, 3] as unknown[]).includes(g.nparity)) {
      throw err.inval(`raidz parity must be 1, 2 or 3, not ${String(g.nparity)}`);
    }
    if (g.type === 'mirror' && g.paths.length < 2) throw err.inval('a mirror needs at least 2 devices');
    if (g.type === 'raidz' && g.paths.length < (g.nparity ?? 1) + 1) throw err.inval(`raidz${g.nparity ?? 1} needs at least ${(g.nparity ?? 1) + 1} devices`);
  }
  // Check every device before touching any.
  for (const p of all) {
    if (!existsSync(p)) {
      if (spec.createSize === undefined) throw err.noent(`cannot open '${p}': no such device or file (use -s SIZE to create files)`);
      if (spec.createSize < MIN_DEVICE_SIZE) throw err.inval(`device '${p}' would be too small: ${spec.createSize} bytes (minimum is 64M)`);
      continue;
    }
    const st = await stat(p);
    if (st.isFile() && st.size < MIN_DEVICE_SIZE) throw err.inval(`device '${p}' is too small: ${st.size} bytes (minimum is 64M)`);
    const leaf = await FileLeaf.open(p, 'probe', { readOnly: true });
    try {
      if (leaf.size < MIN_DEVICE_SIZE) throw err.inval(`device '${p}' is too small: ${leaf.size} bytes (minimum is 64M)`);
      const { config } = await readLabels(leaf);
      if (config && config.state !== 'destroyed') {
        assertNotInUse(config);
        if (!spec.force) throw err.busy(`device '${p}' is part of ${config.state} pool '${config.name}'; use -f to override`);
      }
    } finally {
      await leaf.close();
    }
  }
  for (const p of all) if (!existsSync(p)) await createSparseFile(p, spec.createSize!);

  const leafCfg = (p: string): VdevConfig => ({ type: 'file', guid: Pool.newGuid(), path: p });
  const children: VdevConfig[] = [];
  const addGroup = (g: VdevGroupSpec, log: boolean) => {
    const base = { id: children.length, ...(log ? { log: true } : {}) };
    const paths = g.paths.map((p) => resolve(p));
    if (g.type === 'single') for (const p of paths) children.push({ ...leafCfg(p), id: children.length, ...(log ? { log: true } : {}) } as VdevConfig);
    else if (g.type === 'mirror') children.push({ type: 'mirror', guid: Pool.newGuid(), children: paths.map(leafCfg), ...base });
    else children.push({ type: 'raidz', guid: Pool.newGuid(), nparity: g.nparity ?? 1, children: paths.map(leafCfg), ...base });
  };
  for (const g of spec.groups) addGroup(g, false);
  for (const g of spec.log ?? []) addGroup(g, true);
  const root: VdevRootConfig = { type: 'root', guid: Pool.newGuid(), children };
  if (spec.spares?.length) root.spares = spec.spares.map((p) => leafCfg(resolve(p)));
  if (spec.cache?.length) root.l2cache = spec.cache.map((p) => leafCfg(resolve(p)));

  const events: VdevEvents = {};
  const tree = await VdevTree.open(root, { events });
  try {
    tree.assertUsable(name);
    for (const l of [...tree.leaves(), ...tree.spares, ...tree.l2cache]) await clearLabels(l);
  } catch (e) {
    await tree.close();
    throw e;
  }
  // Record each top-level's size so a larger replacement never moves the end.
  const pool = new Pool(name, Pool.newGuid(), tree, opts, new Directory());
  pool.vdevEvents = events;
  pool.logged = tree.tops.map((t) => new SpaceAllocator({ capacity: t.capacity, sector: 4096 }));
  pool.dir.add(name, 'filesystem', 1, {}, null);
  pool.startTxgs(0);
  pool.configDirty = true;
  pool.labelState = 'active';
  try {
    await pool.commit(`pool create ${name}`);
    await PoolDevices.attach(pool);
  } catch (e) {
    await tree.close();
    throw e;
  }
  return pool;
}

export interface FoundPool {
  name: string;
  guid: string;
  state: string;
  config: LabelConfig;
  /** Leaf guid -> path where it was found. */
  paths: Map<string, string>;
}

/** Read the labels of candidate device files and group them by pool. */
export async function findPools(candidates: string[]): Promise<FoundPool[]> {
  const pools = new Map<string, FoundPool>();
  for (const p of candidates) {
    let leaf: FileLeaf;
    try {
      leaf = await FileLeaf.open(p, 'probe', { readOnly: true });
    } catch {
      continue;
    }
    try {
      if (leaf.size < MIN_DEVICE_SIZE) continue;
      const { config } = await readLabels(leaf);
      if (!config) continue;
      let f = pools.get(config.poolGuid);
      if (!f) pools.set(config.poolGuid, (f = { name: config.name, guid: config.poolGuid, state: config.state, config, paths: new Map() }));
      if (config.txg > f.config.txg) f.config = config;
      f.paths.set(config.guid, resolve(p));
    } catch {
      // Unreadable devices are simply not candidates.
    } finally {
      await leaf.close();
    }
  }
  return [...pools.values()];
}

/** Files (and block devices) directly inside a directory. */
export async function scanDirectory(dir: string): Promise<string[]> {
  // `pool import -d` also takes a device file itself (as zpool import -d does); a
  // missing path is the user's mistake, not an internal error (ENOTDIR/ENOENT leaked).
  let st;
  try {
    st = await stat(dir);
  } catch {
    throw err.noent(`cannot search '${dir}': no such directory or device`);
  }
  if (st.isFile() || st.isBlockDevice()) return [resolve(dir)];
  if (!st.isDirectory()) throw err.inval(`cannot search '${dir}': not a directory or device`);
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) if (e.isFile() || e.isBlockDevice()) out.push(join(dir, e.name));
  return out.sort();
}

/**
 * Applies intent-log records to their volumes in order (the volume write
 * path lives above the pool, so the caller supplies it; see
 * src/volume/replay.ts).
 */
export type LogReplayer = (pool: Pool, records: LogRecord[]) => Promise<void>;

export async function importPool(found: FoundPool, opts: PoolOptions & { force?: boolean; history?: boolean; replay?: LogReplayer } = {}): Promise<Pool> {
  const cfg = found.config;
  if (cfg.state === 'destroyed') throw err.noent(`pool '${cfg.name}' was destroyed`);
  assertNotInUse(cfg);
  const events: VdevEvents = {};
  const tree = await VdevTree.open(cfg.tree, {
    events,
    resolvePath: (c) => found.paths.get(c.guid) ?? c.path,
    identify: async (leaf) => {
      const { config } = await readLabels(leaf);
      return !!config && config.poolGuid === cfg.poolGuid && config.guid === leaf.guid;
    },
  });
  try {
    tree.assertUsable(cfg.name);
    const pool = new Pool(cfg.name, cfg.poolGuid, tree, opts, new Directory());
    pool.vdevEvents = events;
    pool.logged = tree.tops.map((t) => new SpaceAllocator({ capacity: t.capacity, sector: 4096 }));
    const ub = await loadNewest(pool, tree);
    // Intent log: claim the chain before anything allocates, replay after txgs run.
    const header = pool.zilHeader;
    const chain = header ? await readChain(tree.tops, pool.alloc, BigInt('0x' + pool.guid), header, ub.txg) : { records: [], blocks: [] };
    pool.startTxgs(ub.txg);
    if (chain.records.length) {
      if (!opts.replay) throw err.notsup(`pool '${cfg.name}' has intent-log records to replay; import it with strata`);
      await opts.replay(pool, chain.records);
    }
    if (chain.blocks.length) pool.alloc.freeDvas(chain.blocks, pool.txg.open, false);
    pool.configDirty = true;
    pool.labelState = 'active';
    // Reopening a pool that is already imported (the pool cache) is not an import worth a history line.
    PoolDevices.restoreCounters(pool);
    await pool.commit(opts.history === false ? undefined : `pool import ${cfg.name}`);
    // Resume an unfinished scrub or resilver; hot spares for missing devices.
    await PoolDevices.attach(pool);
    return pool;
  } catch (e) {
    await tree.close();
    throw e;
  }
}

async function loadNewest(pool: Pool, tree: VdevTree): Promise<Uberblock> {
  const poolGuid = BigInt('0x' + pool.guid);
  const ubs = new Map<number, Uberblock>();
  for (const leaf of tree.leaves()) {
    if (leaf.state !== 'ONLINE' && leaf.state !== 'DEGRADED') continue;
    for (const ub of (await readLabels(leaf)).uberblocks) if (ub.poolGuid === poolGuid && !ubs.has(ub.txg)) ubs.set(ub.txg, ub);
  }
  const sorted = [...ubs.values()].sort((a, b) => b.txg - a.txg);
  if (sorted.length === 0) throw err.corrupt(`pool '${pool.name}' has no valid uberblock`);
  let lastErr: unknown;
  for (const ub of sorted) {
    try {
      await loadFrom(pool, ub.rootBp);
      if (ub !== sorted[0]) for (const leaf of tree.leaves()) if (leaf.state === 'ONLINE') await invalidateNewer(leaf, ub.txg);
      return ub;
    } catch (e) {
      lastErr = e;
      // Start again from clean allocators for the next candidate.
      pool.alloc.allocators.splice(0, pool.alloc.allocators.length, ...tree.tops.map((t) => new SpaceAllocator({ capacity: t.capacity, sector: 4096 })));
      pool.logged = tree.tops.map((t) => new SpaceAllocator({ capacity: t.capacity, sector: 4096 }));
      pool.arc.clear();
    }
  }
  throw err.corrupt(`pool '${pool.name}': no uberblock leads to a readable pool (${(lastErr as Error)?.message ?? 'unknown'})`);
}

async function loadFrom(pool: Pool, rootBp: BlockPointer): Promise<void> {
  const io = pool.io;
  const root = JSON.parse((await io.readUncached(rootBp)).toString('utf8')) as MosRootJson;
  if (root.guid !== pool.guid) throw err.corrupt('MOS root belongs to another pool');
  const dirObj = byteObjectFromJson(root.dir);
  const smObj = byteObjectFromJson(root.sm);
  const histObj = byteObjectFromJson(root.history);
  const dir = Directory.fromJson(JSON.parse((await readByteObject(io, dirObj)).toString('utf8')) as DirectoryJson);
  const blocks = parseFrames(await readByteObject(io, smObj));
  replaySpaceMap(pool.alloc.allocators, blocks);
  replaySpaceMap(pool.logged, blocks);
  // Metadata is claimed by walking from the MOS root (it is not in the log).
  const claim = (bp: BlockPointer) => {
    for (const d of bp.dvas) pool.alloc.claim(d);
  };
  claim(rootBp);
  const tree = new BlockTree(io);
  for (const o of [dirObj, smObj, histObj]) await tree.walkAll(o.dnode, claim);
  // Dead lists are metadata too.
  for (const rec of dir.datasets.values()) {
    for (const dl of [rec.dead, ...rec.snapshots.map((s) => s.dead)]) if (dl) await walkDeadlistStorage(io, dl, claim);
  }
  pool.dir = dir;
  pool.mos = { dir: dirObj, sm: smObj, smRecords: root.smRecords, history: histObj, rootBp };
  pool.zilHeader = root.zil ?? null;
  pool.scanPersist = { ...emptyScanPersist(), ...(root.scan ?? {}) };
  pool.objects.clear();
  for (const rec of dir.datasets.values()) {
    if (rec.object) pool.objects.set(rec.id, new ObjectState(dnodeFromJson(rec.object), io));
  }
  pool.layers.clear();
  pool.registerLayers();
}

function parseFrames(buf: Buffer): SpaceRecord[][] {
  const out: SpaceRecord[][] = [];
  let at = 0;
  while (at + 4 <= buf.length) {
    const len = buf.readUInt32LE(at);
    if (len === 0 || at + 4 + len > buf.length) throw err.corrupt('space map log is truncated');
    out.push(decodeSpaceMapBlock(buf.subarray(at + 4, at + 4 + len)));
    at += 4 + len;
  }
  return out;
}
