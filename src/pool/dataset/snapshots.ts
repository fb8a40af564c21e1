/**
 * Native snapshots, clones, rollback, promote, holds and rename (ZFS's
 * dsl_dataset snapshot code), as sync tasks: each validates in open
 * context, then applies in syncing context of one txg, after that txg's
 * data is written and before its directory is captured. So a snapshot
 * holds exactly the writes completed before the command, several snapshots
 * named in one call (or -r) are atomic, and every change is durable when
 * the call returns.
 *
 * Space and ownership follow deadlist.ts: a block is live in the head or on
 * exactly one dead list. Frees here are logged in the space map like any
 * data free.
 */
import { err } from '../../errors.js';
import { bpAsize, decodeBp, type BlockPointer } from '../blkptr.js';
import type { Pool } from '../pool.js';
import { dnodeFromJson } from '../object/dnode.js';
import { ObjectState } from '../object/object-state.js';
import { BlockTree } from '../object/tree.js';
import { IND_FANOUT } from '../object/dnode.js';
import type { MetaWriter } from '../object/byte-object.js';
import { ObjType } from '../blkptr.js';
import { validateSnapshotName, validateDatasetName, parentOf } from './names.js';
import type { DatasetRecord, SnapshotRecord } from './directory.js';
import { deadBytes, emptyDeadlist, killDeadlistStorage, readDeadlist, rewriteDeadlist } from './deadlist.js';
import { parseProp } from './props.js';
import { parsePolicy, plan, POLICY_PROP } from './retention.js';

export function splitSnap(full: string): [string, string] {
  const at = full.indexOf('@');
  if (at < 0) throw err.inval(`'${full}' is not a snapshot name (DATASET@SNAP)`);
  return [full.slice(0, at), full.slice(at + 1)];
}

export function findSnap(pool: Pool, full: string): { rec: DatasetRecord; snap: SnapshotRecord; index: number; ds: string } {
  const [ds, name] = splitSnap(full);
  const rec = pool.dir.datasets.get(ds);
  if (!rec) throw err.noent(`dataset '${ds}' does not exist`);
  const index = rec.snapshots.findIndex((s) => s.name === name);
  if (index < 0) throw err.noent(`snapshot '${full}' does not exist`);
  return { rec, snap: rec.snapshots[index]!, index, ds };
}

function meta(pool: Pool, txg: number): MetaWriter {
  return { io: pool.io, txg, type: ObjType.DeadList, kill: (bp) => void pool.io.free(bp, txg, false) };
}

const freeData = (pool: Pool, txg: number) => (bp: BlockPointer) => void pool.io.free(bp, txg, true);

/** Txg after which blocks are this dataset's own (its origin's for clones, else 0). */
export function ownTxg(rec: DatasetRecord): number {
  return rec.originTxg ?? 0;
}

/** USED of a snapshot: what destroying it would free. */
export function snapshotUnique(rec: DatasetRecord, index: number): number {
  const prevTxg = index > 0 ? rec.snapshots[index - 1]!.createTxg : ownTxg(rec);
  const next = index + 1 < rec.snapshots.length ? rec.snapshots[index + 1]!.dead : rec.dead;
  // cow/row snapshots own a store or layer instead (their dead lists stay empty).
  return deadBytes(next, prevTxg, rec.snapshots[index]!.createTxg) + (rec.snapshots[index]!.layerUsed ?? 0);
}

/** usedbydataset: what destroying the head (after its snapshots) frees: its blocks, less those its origin owns. */
export function usedByDataset(rec: DatasetRecord): number {
  return Math.max(0, rec.referenced - (rec.originShared ?? 0));
}

/** usedbysnapshots: blocks only snapshots hold (every dead list, own blocks only). */
export function usedBySnapshots(rec: DatasetRecord): number {
  const own = ownTxg(rec);
  let n = deadBytes(rec.dead, own);
  for (const s of rec.snapshots) n += deadBytes(s.dead, own) + (s.layerUsed ?? 0);
  return n;
}

// ------------------------------------------------------------------ create

export async function snapshot(pool: Pool, names: string[], command?: string): Promise<void> {
  validateNewSnapshots(pool, names);
  await pool.syncTask(async (txg) => {
    recheckNewSnapshots(pool, names);
    for (const full of names) {
      const [ds, name] = splitSnap(full);
      takeSnapshotSync(pool, txg, pool.dir.get(ds), name);
    }
  }, command ?? `snapshot ${names.join(' ')}`);
}

/** Open context: names valid, in this pool, new and distinct. */
export function validateNewSnapshots(pool: Pool, names: string[]): void {
  const seen = new Set<string>();
  for (const full of names) {
    validateSnapshotName(full);
    const [ds, name] = splitSnap(full);
    if (ds.split('/')[0] !== pool.name) throw err.inval(`cannot snapshot '${full}': all snapshots must be in pool '${pool.name}'`);
    const rec = pool.dir.get(ds);
    if (rec.snapshots.some((s) => s.name === name) || seen.has(full)) throw err.exist(`cannot create snapshot '${full}': dataset already exists`);
    seen.add(full);
  }
}

/** Syncing context: another task in this txg may have taken a name. */
export function recheckNewSnapshots(pool: Pool, names: string[]): void {
  for (const full of names) {
    const [ds, name] = splitSnap(full);
    const rec = pool.dir.get(ds);
    if (rec.snapshots.some((s) => s.name === name)) throw err.exist(`cannot create snapshot '${full}': dataset already exists`);
  }
}

/** What a snapshot record holds that depends on its strategy (native, cow, row); absent fields stay absent. */
export type SnapshotOwn = Pick<SnapshotRecord, 'object' | 'dead' | 'originShared' | 'layerUsed'>;

/**
 * A new snapshot record `name` of `rec`, created in `txg` (not yet added to
 * `rec.snapshots`): the fields every strategy fills alike, and `own`. Keys
 * in the order the directory has always stored them.
 */
export function newSnapshotRecord(pool: Pool, txg: number, rec: DatasetRecord, name: string, own: SnapshotOwn): SnapshotRecord {
  return {
    id: pool.dir.nextId++,
    guid: Math.floor(Math.random() * 2 ** 48).toString(16).padStart(16, '0'),
    name,
    createTxg: txg,
    creation: Date.now(),
    object: own.object,
    referenced: rec.referenced,
    logical: rec.logical,
    userProps: {},
    holds: {},
    ...(own.dead !== undefined ? { dead: own.dead } : {}),
    clones: [],
    written: rec.written ?? rec.referenced,
    ...(own.originShared !== undefined ? { originShared: own.originShared } : {}),
    ...(own.layerUsed !== undefined ? { layerUsed: own.layerUsed } : {}),
  };
}

/** Syncing context: record native snapshot `name` of `rec` (the head's tree is final for this txg). */
export function takeSnapshotSync(pool: Pool, txg: number, rec: DatasetRecord, name: string): SnapshotRecord {
  const snap = newSnapshotRecord(pool, txg, rec, name, { object: rec.object, dead: rec.dead ?? emptyDeadlist(), originShared: rec.originShared ?? 0 });
  rec.snapshots.push(snap);
  rec.dead = emptyDeadlist();
  rec.prevSnapTxg = txg;
  rec.written = 0;
  return snap;
}

// ----------------------------------------------------------------- destroy

/** Refusals of `destroy vol@snap`, checked before anything changes. */
export function checkDestroySnapshot(pool: Pool, full: string): void {
  const { snap } = findSnap(pool, full);
  const holds = Object.keys(snap.holds ?? {});
  if (holds.length) throw err.busy(`cannot destroy snapshot '${full}': it is held (tags: ${holds.join(', ')})`);
  if (snap.clones?.length) throw err.busy(`cannot destroy snapshot '${full}': it has dependent clones (${snap.clones.join(', ')}); use -R to destroy them too`);
}

/**
 * Every clone that depends on these snapshots, transitively (clones of the
 * clones' snapshots, and their dataset descendants), in an order that can be
 * destroyed front to back: dependents before what they depend on.
 */
export function dependentClones(pool: Pool, snaps: string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (ds: string) => {
    if (seen.has(ds) || !pool.dir.has(ds)) return;
    seen.add(ds);
    const all = [ds, ...pool.dir.descendants(ds)];
    for (const d of all) for (const s of pool.dir.get(d).snapshots) for (const c of s.clones ?? []) visit(c);
    for (const d of all.reverse()) if (!order.includes(d)) order.push(d);
  };
  for (const full of snaps) for (const c of findSnap(pool, full).snap.clones ?? []) visit(c);
  return order;
}

/**
 * Refusals of `destroy [-R] SNAP...`, all checked before anything changes:
 * a held snapshot, clones without -R, and with -R a held snapshot in any
 * dependent clone.
 */
export function checkDestroySnapshots(pool: Pool, snaps: string[], recursiveClones: boolean): string[] {
  for (const full of snaps) {
    const holds = Object.keys(findSnap(pool, full).snap.holds ?? {});
    if (holds.length) throw err.busy(`cannot destroy snapshot '${full}': it is held (tags: ${holds.join(', ')})`);
  }
  const clones = dependentClones(pool, snaps);
  if (clones.length && !recursiveClones) checkDestroySnapshot(pool, snaps.find((s) => (findSnap(pool, s).snap.clones ?? []).length)!);
  for (const c of clones) {
    const held = pool.dir.get(c).snapshots.find((s) => Object.keys(s.holds ?? {}).length);
    if (held) throw err.busy(`cannot destroy snapshot '${snaps[0]}': dependent clone '${c}' has a held snapshot '${c}@${held.name}'`);
  }
  return clones;
}

/** Applied in syncing context. Frees what only this snapshot held. */
export async function destroySnapshotSync(pool: Pool, txg: number, full: string): Promise<number> {
  const { rec, index } = findSnap(pool, full);
  return destroySnapshotRunSync(pool, txg, rec, index, index, [full]);
}

/**
 * Destroy the consecutive snapshots [first, last] of one dataset in one
 * pass (syncing context). With P the snapshot before the run (txg p) and N
 * the one after it (or the head): every entry of N's and the run's dead
 * lists born after p was referenced only by the run, so it is freed; the
 * rest (P still references them) become N's dead list. Each list is read
 * once, so destroying k neighbours costs their lists, not k passes over a
 * growing merged list.
 */
export async function destroySnapshotRunSync(pool: Pool, txg: number, rec: DatasetRecord, first: number, last: number, names?: string[]): Promise<number> {
  const ds = pool.nameOfId(rec.id)!;
  for (const s of rec.snapshots.slice(first, last + 1)) checkDestroySnapshot(pool, `${ds}@${s.name}`);
  if (names) {
    // The run must still be exactly these snapshots (syncing context re-check).
    const now = rec.snapshots.slice(first, last + 1).map((s) => `${ds}@${s.name}`);
    if (now.join('\n') !== names.join('\n')) throw err.busy(`cannot destroy ${names.join(', ')}: snapshots changed meanwhile`);
  }
  const prevTxg = first > 0 ? rec.snapshots[first - 1]!.createTxg : ownTxg(rec);
  const isLast = last === rec.snapshots.length - 1;
  const nextDead = (isLast ? rec.dead : rec.snapshots[last + 1]!.dead) ?? emptyDeadlist();
  const run = rec.snapshots.slice(first, last + 1);
  const keep: BlockPointer[] = [];
  let freed = 0;
  // Reads in parallel (each list is a separate small object); frees in list order.
  const lists = await Promise.all([nextDead, ...run.map((s) => s.dead ?? emptyDeadlist())].map((d) => readDeadlist(pool.io, d)));
  for (const list of lists) {
    for (const bp of list) {
      if (bp.birth > prevTxg) freed += pool.io.free(bp, txg, true);
      else keep.push(bp);
    }
  }
  const newDead = await rewriteDeadlist(meta(pool, txg), nextDead, keep);
  const gone: BlockPointer[] = [];
  await Promise.all(run.map((s) => (s.dead ? killDeadlistStorage(pool.io, s.dead, (bp) => void gone.push(bp)) : undefined)));
  for (const bp of gone) pool.io.free(bp, txg, false);
  const written = run.reduce((n, s) => n + (s.written ?? 0), 0);
  if (isLast) {
    rec.dead = newDead;
    // Blocks born after the previous snapshot are now the head's alone.
    rec.prevSnapTxg = prevTxg;
    rec.written = (rec.written ?? 0) + written;
  } else {
    const next = rec.snapshots[last + 1]!;
    next.dead = newDead;
    next.written = (next.written ?? 0) + written;
  }
  rec.snapshots.splice(first, last - first + 1);
  return freed;
}

/**
 * Dead-list entries one destroy txg may read. A destroy of many snapshots
 * is split into batches of consecutive snapshots, one sync task (txg) each,
 * so other writers' txgs keep committing between them instead of waiting
 * behind one long sync (ZFS users know the stall; this is our answer short
 * of a full async-destroy queue). The call returns when every batch is
 * durable.
 */
export const DESTROY_TXG_BUDGET = 16_384;
export const DESTROY_LIST_COST = 256;

/** Split names into per-dataset runs of consecutive snapshots, then into batches under the budget. */
export function planDestroyBatches(pool: Pool, names: string[], budget = DESTROY_TXG_BUDGET): string[][] {
  const byDs = new Map<string, Set<string>>();
  for (const n of names) {
    const [ds, snap] = splitSnap(n);
    findSnap(pool, n);
    if (!byDs.has(ds)) byDs.set(ds, new Set());
    byDs.get(ds)!.add(snap);
  }
  const batches: string[][] = [];
  for (const [ds, set] of byDs) {
    const rec = pool.dir.get(ds);
    let cur: string[] = [];
    let cost = 0;
    let prevIdx = -2;
    rec.snapshots.forEach((s, i) => {
      if (!set.has(s.name)) return;
      // Cost: its entries, plus a fixed share for reading and freeing the list object itself.
      const c = (s.dead?.count ?? 0) + DESTROY_LIST_COST;
      // A new batch at a gap (runs are per neighbour) or when the budget is spent.
      if (cur.length && (i !== prevIdx + 1 || cost + c > budget)) {
        batches.push(cur);
        cur = [];
        cost = 0;
      }
      cur.push(`${ds}@${s.name}`);
      cost += c;
      prevIdx = i;
    });
    if (cur.length) batches.push(cur);
  }
  return batches;
}

/**
 * Bytes destroying these snapshots frees (`destroy -nv`): per run of
 * neighbours, every entry of the next list and of the run's lists born
 * after the snapshot before the run, from the summaries alone. (The sum of
 * each snapshot's USED would miss blocks shared only inside the run.)
 */
export function reclaimOf(pool: Pool, names: string[]): number {
  let n = 0;
  for (const run of planDestroyBatches(pool, names, Infinity)) {
    const { rec, index: first } = findSnap(pool, run[0]!);
    const last = first + run.length - 1;
    const prevTxg = first > 0 ? rec.snapshots[first - 1]!.createTxg : ownTxg(rec);
    const next = last + 1 < rec.snapshots.length ? rec.snapshots[last + 1]!.dead : rec.dead;
    n += deadBytes(next, prevTxg);
    for (let i = first; i <= last; i++) n += deadBytes(rec.snapshots[i]!.dead, prevTxg);
  }
  return n;
}

export async function destroySnapshots(pool: Pool, names: string[], command?: string, budget = pool.opts.destroyTxgBudget ?? DESTROY_TXG_BUDGET): Promise<void> {
  for (const n of names) checkDestroySnapshot(pool, n);
  const batches = planDestroyBatches(pool, names, budget);
  for (let b = 0; b < batches.length; b++) {
    const batch = batches[b]!;
    await pool.syncTask(
      async (txg) => {
        const { rec, index } = findSnap(pool, batch[0]!);
        await destroySnapshotRunSync(pool, txg, rec, index, index + batch.length - 1, batch);
      },
      // One history line for the command, with the first batch.
      b === 0 ? (command ?? `destroy ${names.join(',')}`) : undefined,
    );
  }
}

/**
 * `destroy -r DATASET`: destroy the snapshots of everything going first,
 * batched like any snapshot destroy (see destroySnapshots), so the final
 * txg that removes the datasets has little left to free and writers are
 * not stalled behind it. Does nothing when the destroy will be refused
 * (the caller's destroyDataset then reports why) or when there is little
 * to gain. Snapshots with clones (inside the destroyed set) stay for the
 * final txg.
 */
export async function destroySnapshotsBeforeDatasets(pool: Pool, name: string, recursive: boolean, command?: string): Promise<void> {
  if (!recursive || name === pool.name || !pool.dir.has(name)) return;
  const gone = [name, ...pool.dir.descendants(name)];
  const snaps: string[] = [];
  for (const n of gone) {
    const r = pool.dir.get(n);
    // cow/row layers are freed whole with their dataset (no dead lists to walk): nothing to gain.
    if (r.props['snapmode'] === 'cow' || r.props['snapmode'] === 'row') continue;
    for (const s of r.snapshots) {
      if (Object.keys(s.holds ?? {}).length) return;
      if ((s.clones ?? []).some((c) => !gone.includes(c))) return;
      if (!(s.clones ?? []).length) snaps.push(`${n}@${s.name}`);
    }
  }
  if (snaps.length < 2) return;
  await destroySnapshots(pool, snaps, command ? `${command} (snapshots first)` : undefined);
}

// ---------------------------------------------------------------- rollback

export async function rollback(pool: Pool, full: string, opts: { destroyLater?: boolean; command?: string } = {}): Promise<void> {
  const { rec, index, ds } = findSnap(pool, full);
  const later = rec.snapshots.slice(index + 1).map((s) => `${ds}@${s.name}`);
  if (later.length && !opts.destroyLater) {
    throw err.exist(`cannot rollback to '${full}': more recent snapshots exist; use -r to destroy them: ${later.join(', ')}`);
  }
  for (const l of later) checkDestroySnapshot(pool, l);
  await pool.syncTask(async (txg) => {
    if (later.length) {
      const at = findSnap(pool, full).index;
      await destroySnapshotRunSync(pool, txg, rec, at + 1, at + later.length, later);
    }
    const { snap } = findSnap(pool, full);
    await resetHead(pool, txg, rec, snap, snap.createTxg, snap.originShared ?? 0);
  }, opts.command ?? `rollback ${full}`);
}

// ------------------------------------------------------------------- clone

export async function clone(pool: Pool, full: string, targets: string[], props: Record<string, string> = {}, command?: string): Promise<void> {
  const local = validateClone(pool, full, targets, props);
  await pool.syncTask(async (txg) => {
    const { rec: o, snap } = findSnap(pool, full);
    for (const t of targets) if (pool.dir.has(t)) throw err.exist(`cannot create '${t}': dataset already exists`);
    for (const t of targets) {
      const volsize = String(dnodeFromJson(snap.object!).nblocks * dnodeFromJson(snap.object!).blockSize);
      const rec = pool.dir.add(t, 'volume', txg, { ...local, volsize, volblocksize: o.props['volblocksize']!, snapmode: 'native' }, snap.object);
      rec.origin = full;
      rec.originTxg = snap.createTxg;
      rec.prevSnapTxg = snap.createTxg;
      rec.referenced = snap.referenced;
      rec.logical = snap.logical;
      rec.dead = emptyDeadlist();
      rec.written = 0;
      rec.originShared = snap.referenced;
      (snap.clones ??= []).push(t);
      pool.objects.set(rec.id, new ObjectState(dnodeFromJson(snap.object!), pool.io));
    }
  }, command ?? `clone ${full} ${targets.join(' ')}`);
}

/** Open context: the origin is a volume snapshot, the targets are new and placeable; returns the parsed properties. */
export function validateClone(pool: Pool, full: string, targets: string[], props: Record<string, string>): Record<string, string> {
  const { rec: origin } = findSnap(pool, full);
  if (origin.type !== 'volume') throw err.notsup(`cannot clone '${full}': only volume snapshots can be cloned`);
  const local: Record<string, string> = {};
  for (const [k, v] of Object.entries(props)) local[k] = parseProp(k, v, { creating: true, isVolume: true });
  if ('volblocksize' in local) throw err.inval('cannot set volblocksize on a clone: it is the origin\'s');
  if ('snapmode' in local && local['snapmode'] !== (origin.props['snapmode'] ?? 'native')) throw err.inval(`cannot set snapmode on a clone: it is the origin's (${origin.props['snapmode'] ?? 'native'})`);
  const seen = new Set<string>();
  for (const t of targets) {
    validateDatasetName(t);
    if (t.split('/')[0] !== pool.name) throw err.inval(`cannot clone '${full}' to '${t}': clones must be in the same pool`);
    if (pool.dir.has(t) || seen.has(t)) throw err.exist(`cannot create '${t}': dataset already exists`);
    const parent = parentOf(t)!;
    const p = pool.dir.datasets.get(parent);
    if (!p) throw err.noent(`cannot create '${t}': parent '${parent}' does not exist`);
    if (p.type === 'volume') throw err.inval(`cannot create '${t}': parent is a volume`);
    seen.add(t);
  }
  return local;
}

// ----------------------------------------------------------------- promote

export async function promote(pool: Pool, cloneName: string, command?: string): Promise<void> {
  const c = pool.dir.get(cloneName);
  if (!c.origin) throw err.inval(`cannot promote '${cloneName}': not a cloned volume`);
  const { rec: o, index, ds: originName } = findSnap(pool, c.origin);
  const moved = o.snapshots.slice(0, index + 1);
  for (const s of moved) {
    if (c.snapshots.some((x) => x.name === s.name)) throw err.exist(`cannot promote '${cloneName}': it already has a snapshot named '${s.name}'; rename it first`);
  }
  await pool.syncTask(async () => {
    const renameOrigin = (from: string, to: string) => {
      for (const r of pool.dir.datasets.values()) if (r.origin === from) r.origin = to;
    };
    const snapS = o.snapshots[index]!;
    // The origin's snapshots up to and including the origin snapshot move to the clone.
    o.snapshots = o.snapshots.slice(index + 1);
    c.snapshots = moved.concat(c.snapshots);
    for (const s of moved) renameOrigin(`${originName}@${s.name}`, `${cloneName}@${s.name}`);
    snapS.clones = (snapS.clones ?? []).filter((x) => x !== cloneName).concat([originName]);
    // The old parent becomes a clone of the moved snapshot; the clone takes the parent's origin.
    const oldOrigin = o.origin ?? null;
    const oldOriginTxg = o.originTxg ?? 0;
    if (oldOrigin) {
      const up = findSnap(pool, oldOrigin).snap;
      up.clones = (up.clones ?? []).map((x) => (x === originName ? cloneName : x));
    }
    c.origin = oldOrigin;
    c.originTxg = oldOriginTxg;
    o.origin = `${cloneName}@${snapS.name}`;
    o.originTxg = snapS.createTxg;
    // Shared-with-origin bytes: the clone now owns its former origin's history; the old parent shares with the moved snapshot.
    c.originShared = 0;
    if (oldOrigin) {
      let shared = 0;
      const cObj = pool.objects.get(c.id);
      if (cObj) await new BlockTree(pool.io).walkAll(cObj.dnode, (bp) => void (bp.birth <= oldOriginTxg && (shared += bpAsize(bp))));
      c.originShared = shared;
    }
    let oShared = 0;
    const oObj = pool.objects.get(o.id);
    if (oObj) await new BlockTree(pool.io).walkAll(oObj.dnode, (bp) => void (bp.birth <= snapS.createTxg && (oShared += bpAsize(bp))));
    o.originShared = oShared;
    // prevSnapTxg of both heads is unchanged: each head's latest snapshot (or the moved one) keeps its txg.
  }, command ?? `promote ${cloneName}`);
}

// ------------------------------------------------------------ holds, rename

export async function hold(pool: Pool, tag: string, names: string[], command?: string): Promise<void> {
  if (!tag || tag.length > 255) throw err.inval('invalid hold tag');
  for (const n of names) {
    const { snap } = findSnap(pool, n);
    if (snap.holds[tag] !== undefined) throw err.exist(`cannot hold snapshot '${n}': tag '${tag}' already exists on this snapshot`);
  }
  await pool.syncTask(async () => {
    for (const n of names) findSnap(pool, n).snap.holds[tag] = Date.now();
  }, command ?? `hold ${tag} ${names.join(' ')}`);
}

export async function release(pool: Pool, tag: string, names: string[], command?: string): Promise<void> {
  for (const n of names) {
    const { snap } = findSnap(pool, n);
    if (snap.holds[tag] === undefined) throw err.noent(`cannot release hold from snapshot '${n}': no such tag on this snapshot`);
  }
  await pool.syncTask(async () => {
    for (const n of names) delete findSnap(pool, n).snap.holds[tag];
  }, command ?? `release ${tag} ${names.join(' ')}`);
}

export async function renameSnapshot(pool: Pool, from: string, to: string, command?: string): Promise<void> {
  const { ds } = findSnap(pool, from);
  const target = to.includes('@') ? to : `${ds}@${to}`;
  validateSnapshotName(target);
  const [tds, tname] = splitSnap(target);
  if (tds !== ds) throw err.inval(`cannot rename '${from}' to '${target}': snapshots cannot move between datasets`);
  const rec = pool.dir.get(ds);
  if (rec.snapshots.some((s) => s.name === tname)) throw err.exist(`cannot rename to '${target}': snapshot already exists`);
  await pool.syncTask(async () => {
    const { snap } = findSnap(pool, from);
    snap.name = tname;
    for (const r of pool.dir.datasets.values()) if (r.origin === from) r.origin = target;
  }, command ?? `rename ${from} ${target}`);
}

// -------------------------------------------------------------------- diff

export interface DiffRange {
  offset: number;
  length: number;
  change: '+' | '-' | 'M';
}

/**
 * Block ranges that differ between snapshot A and B (a later snapshot or the
 * head), from block pointers alone: subtrees whose pointers are identical
 * are skipped without reading, so the cost follows the change, not the size.
 * Unsynced writes of the head are included.
 */
export async function diff(pool: Pool, fromFull: string, to: string): Promise<DiffRange[]> {
  const a = findSnap(pool, fromFull);
  let bDnode;
  let obj: ObjectState | undefined;
  if (to.includes('@')) {
    const b = findSnap(pool, to);
    if (b.rec !== a.rec) throw err.inval(`'${fromFull}' and '${to}' are not snapshots of the same dataset`);
    if (b.snap.createTxg < a.snap.createTxg) throw err.inval(`'${to}' is older than '${fromFull}'`);
    bDnode = dnodeFromJson(b.snap.object!);
  } else {
    const rec = pool.dir.get(to);
    if (rec !== a.rec) throw err.inval(`'${fromFull}' is not a snapshot of '${to}'`);
    obj = pool.objects.get(rec.id);
    if (!obj) throw err.inval(`'${to}' has no data`);
    bDnode = obj.dnode;
  }
  const aDnode = dnodeFromJson(a.snap.object!);
  const bs = aDnode.blockSize;
  const changes = new Map<number, '+' | '-' | 'M'>();
  const io = pool.io;
  const same = (x: BlockPointer | null, y: BlockPointer | null) =>
    (!x && !y) || (!!x && !!y && x.birth === y.birth && x.dvas[0]!.offset === y.dvas[0]!.offset && x.dvas[0]!.vdev === y.dvas[0]!.vdev);
  // A node of either tree: a pointer and the level it really sits at. A
  // shorter tree (the volume grew since) is seen as child 0 of virtual parents.
  type Node = { bp: BlockPointer | null; level: number };
  const children = async (n: Node, level: number): Promise<(i: number) => Node> => {
    if (!n.bp) return () => ({ bp: null, level: level - 1 });
    if (n.level < level) return (i) => (i === 0 ? n : { bp: null, level: level - 1 });
    const ind = await io.read(n.bp);
    return (i) => ({ bp: decodeBp(ind, i * 128), level: level - 1 });
  };
  const span = (level: number) => Math.pow(IND_FANOUT, level);
  const compare = async (x: Node, y: Node, level: number, base: number): Promise<void> => {
    if (x.level === y.level && same(x.bp, y.bp)) return;
    if (!x.bp && !y.bp) return;
    if (level === 0) {
      changes.set(base, !x.bp ? '+' : !y.bp ? '-' : 'M');
      return;
    }
    const [cx, cy] = await Promise.all([children(x, level), children(y, level)]);
    for (let i = 0; i < IND_FANOUT; i++) {
      const nx = cx(i);
      const ny = cy(i);
      if (!nx.bp && !ny.bp) continue;
      await compare(nx, ny, level - 1, base + i * span(level - 1));
    }
  };
  const top = Math.max(aDnode.levels, bDnode.levels);
  await compare({ bp: aDnode.root, level: aDnode.levels }, { bp: bDnode.root, level: bDnode.levels }, top, 0);
  const tree = new BlockTree(io);
  if (obj) for (const m of obj.dirty.values()) for (const [blkid, data] of m) {
    const pa = await tree.getBp(aDnode, blkid);
    if (data === null) {
      if (pa) changes.set(blkid, '-');
      else changes.delete(blkid);
    } else changes.set(blkid, pa ? 'M' : '+');
  }
  const ids = [...changes.keys()].sort((x, y) => x - y);
  const out: DiffRange[] = [];
  for (const id of ids) {
    const c = changes.get(id)!;
    const last = out[out.length - 1];
    if (last && last.change === c && last.offset + last.length === id * bs) last.length += bs;
    else out.push({ offset: id * bs, length: bs, change: c });
  }
  return out;
}

/**
 * Make the head identical to snapshot `snap` (rollback, reset to origin), in
 * syncing context: unsynced writes are discarded, the head's own blocks born
 * after `after` are freed, and its dead list is dropped (those blocks are
 * referenced by the snapshot again).
 */
async function resetHead(pool: Pool, txg: number, rec: DatasetRecord, snap: SnapshotRecord, after: number, originShared: number): Promise<void> {
  const obj = pool.objects.get(rec.id);
  if (obj) {
    obj.clearDirty();
    await new BlockTree(pool.io).walkBorn(obj.dnode, after, freeData(pool, txg));
    obj.dnode = dnodeFromJson(snap.object!);
    rec.object = snap.object;
    rec.props['volsize'] = String(obj.dnode.nblocks * obj.dnode.blockSize);
  }
  if (rec.dead) await killDeadlistStorage(pool.io, rec.dead, (bp) => void pool.io.free(bp, txg, false));
  rec.dead = emptyDeadlist();
  rec.referenced = snap.referenced;
  rec.logical = snap.logical;
  rec.prevSnapTxg = after;
  rec.written = 0;
  rec.originShared = originShared;
}

// --------------------------------------------------------- reset to origin

/**
 * `rollback --to-origin CLONE`: make a clone identical to its origin
 * snapshot again (template provisioning's "reset this VM"). Frees what the
 * clone wrote; refused while the clone has snapshots of its own.
 */
export async function resetClone(pool: Pool, name: string, command?: string): Promise<void> {
  const rec = pool.dir.get(name);
  if (!rec.origin) throw err.inval(`'${name}' is not a clone`);
  if (rec.snapshots.length) throw err.busy(`cannot reset '${name}' to its origin: it has snapshots (${rec.snapshots.map((s) => s.name).join(', ')})`);
  await pool.syncTask(async (txg) => {
    const { snap } = findSnap(pool, rec.origin!);
    await resetHead(pool, txg, rec, snap, rec.originTxg ?? snap.createTxg, snap.referenced);
  }, command ?? `rollback --to-origin ${name}`);
}

// ------------------------------------------------------ scheduled snapshots

export interface AutoSnapshotResult {
  taken: string[];
  destroyed: string[];
  /** Expired but kept (held or cloned); retried on later runs. */
  kept: { name: string; why: 'held' | 'cloned' }[];
}

/**
 * One run of the snapshot policy (property `snapshot:policy`, see
 * retention.ts) over `roots` and their descendants (the whole pool when
 * empty): every due snapshot is taken in one atomic sync task, then the
 * expired ones are destroyed in another. Held and cloned ones stay.
 */
export interface SnapshotOps {
  snapshot(pool: Pool, names: string[], command?: string): Promise<void>;
  destroy(pool: Pool, names: string[], command?: string): Promise<void>;
}

export async function autoSnapshots(pool: Pool, roots: string[], now: number, opts: { dryRun?: boolean; ops?: SnapshotOps } = {}): Promise<AutoSnapshotResult> {
  const names = new Set<string>();
  for (const r of roots.length ? roots : [pool.name]) {
    pool.dir.get(r);
    names.add(r);
    for (const d of pool.dir.descendants(r)) names.add(d);
  }
  const out: AutoSnapshotResult = { taken: [], destroyed: [], kept: [] };
  for (const ds of [...names].sort()) {
    const value = pool.dir.propValue(ds, POLICY_PROP);
    let policy;
    try {
      policy = parsePolicy(value);
    } catch {
      continue; // an invalid inherited value (set before validation existed) disables the policy here
    }
    const rec = pool.dir.get(ds);
    const p = plan(
      policy,
      rec.snapshots.map((s) => ({ name: s.name, held: Object.keys(s.holds ?? {}).length > 0, cloned: (s.clones ?? []).length > 0 })),
      now,
    );
    out.taken.push(...p.take.map((n) => `${ds}@${n}`));
    out.destroyed.push(...p.destroy.map((n) => `${ds}@${n}`));
    out.kept.push(...p.kept.map((k) => ({ name: `${ds}@${k.name}`, why: k.why })));
  }
  if (opts.dryRun) return out;
  if (out.taken.length) await (opts.ops?.snapshot ?? snapshot)(pool, out.taken, `snapshot --auto (${out.taken.length} taken)`);
  if (out.destroyed.length) await (opts.ops?.destroy ?? destroySnapshots)(pool, out.destroyed, `destroy --auto ${out.destroyed.join(',')}`);
  return out;
}
