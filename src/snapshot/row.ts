/**
 * row: redirect-on-write with differencing layers (qcow2 backing chains,
 * VMware/Hyper-V differencing disks), inside the pool.
 *
 * Theory. A row volume is a stack of layers, bottom to top: its origin's
 * layers up to the origin snapshot (clones), its own snapshots' frozen
 * layers, and the head on top, the only layer written. A layer holds the
 * blocks written while it was on top; all-zero blocks are kept as data
 * because a hole means "not in this layer". A snapshot freezes the head
 * (its tree becomes the snapshot's layer, unchanged) and stacks a new empty
 * head: O(1), no data moves.
 *
 * Reads: the head, else the newest layer below holding the block. An index
 * built once per structural change (owner[b] = slot of that layer) makes
 * that one lookup whatever the depth, so a chain of 100 reads like a
 * chain of 1; snapshot views get an index of their own part of the stack.
 *
 * Deleting snapshot S_i merges its layer up into the next one (S_{i+1}'s
 * layer or the head): blocks the upper layer lacks are copied into it, in
 * batches (each batch one txg; into the head with I/O paused, so a guest
 * write is never overwritten by older data), then the layer is freed. Each
 * batch keeps every view (the copies are what readers found below before),
 * so a crash mid-merge loses nothing. Rollback drops the head and the later
 * layers: O(1) in data. Promote is refused (clones share the origin's
 * layers by reference).
 */
import { err } from '../errors.js';
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';
import { dnodeToJson, newDnode } from '../pool/object/dnode.js';
import { ObjectState } from '../pool/object/object-state.js';
import { findSnap, newSnapshotRecord, validateClone, type DiffRange } from '../pool/dataset/snapshots.js';
import { Bitmap } from './bitmap.js';
import { bumpGeneration, cached, destroyEach, dropLayer, headObject, layerObject, presenceOf, readBlocks, rollbackTarget, runtimeOf, serialized, snapshotEach } from './layers.js';
import type { SnapshotStrategy, WritePath } from './strategy.js';
import { LayeredView, stillThere } from './view.js';
import { forgetLayer, headOwner, layerOwner, transplantSync } from './transplant.js';
import { rangesOf } from './ranges.js';

/** Which layer (slot, 1-based; 0 = none) holds each block. */
export interface RowIndex {
  owner: Uint16Array | Uint32Array;
  layers: ObjectState[];
}

/** Layers of the stack below a clone's own: its origin's, up to the origin snapshot, recursively. */
function baseLayers(pool: Pool, rec: DatasetRecord): ObjectState[] {
  if (!rec.origin) return [];
  const { rec: o, index } = findSnap(pool, rec.origin);
  return [...baseLayers(pool, o), ...o.snapshots.slice(0, index + 1).map((s) => layerObject(pool, s.id))];
}

/** The frozen layers under the view of snapshot `upto` (inclusive), or under the head (upto = snapshots.length - 1). */
function stackOf(pool: Pool, rec: DatasetRecord, upto: number): ObjectState[] {
  return [...baseLayers(pool, rec), ...rec.snapshots.slice(0, upto + 1).map((s) => layerObject(pool, s.id))];
}

async function buildIndex(layers: ObjectState[], nblocks: number): Promise<RowIndex> {
  const owner = layers.length < 0xffff ? new Uint16Array(nblocks) : new Uint32Array(nblocks);
  for (let i = 0; i < layers.length; i++) {
    const has = await presenceOf(layers[i]!);
    for (const b of has.ones(0, nblocks)) owner[b] = i + 1;
  }
  return { owner, layers };
}

/** The datasets whose layers a row volume's stack holds: itself, its origin, the origin's origin... */
function chainOf(pool: Pool, rec: DatasetRecord): DatasetRecord[] {
  const out = [rec];
  for (let r = rec; r.origin; ) {
    r = findSnap(pool, r.origin).rec;
    out.push(r);
  }
  return out;
}

function headIndex(pool: Pool, rec: DatasetRecord): Promise<RowIndex> {
  return cached(pool, `row:${rec.id}`, chainOf(pool, rec), () => buildIndex(stackOf(pool, rec, rec.snapshots.length - 1), headObject(pool, rec).dnode.nblocks));
}

function viewIndex(pool: Pool, rec: DatasetRecord, snap: SnapshotRecord): Promise<RowIndex> {
  return cached(pool, `rowview:${snap.id}`, chainOf(pool, rec), () => {
    const at = rec.snapshots.indexOf(snap);
    if (at < 0) throw err.noent(`snapshot was destroyed`);
    return buildIndex(stackOf(pool, rec, at), layerObject(pool, snap.id).dnode.nblocks);
  });
}

/** Read blocks through an index (the caller checked the top first); null where no layer holds them. */
async function readThrough(pool: Pool, idx: RowIndex, ids: number[], acct?: import('../pool/io/account.js').IoAccount, forWrite = false): Promise<(Buffer | null)[]> {
  const out: (Buffer | null)[] = new Array(ids.length).fill(null);
  const groups = new Map<number, number[]>();
  ids.forEach((b, i) => {
    const slot = b < idx.owner.length ? idx.owner[b]! : 0;
    if (!slot) return;
    let g = groups.get(slot);
    if (!g) groups.set(slot, (g = []));
    g.push(i);
  });
  await Promise.all(
    [...groups].map(async ([slot, list]) => {
      const datas = await readBlocks(pool, idx.layers[slot - 1]!, list.map((i) => ids[i]!), acct, forWrite);
      list.forEach((i, k) => (out[i] = datas[k] ?? null));
    }),
  );
  return out;
}

/** Syncing context: freeze the head as the new snapshot's layer and stack an empty head. */
export function takeRowSnapshot(pool: Pool, txg: number, rec: DatasetRecord, name: string): void {
  const head = headObject(pool, rec);
  for (const t of head.dirty.keys()) if (t > txg && head.dirty.get(t)!.size) throw err.busy(`cannot snapshot: writes of txg ${t} are pending`);
  const snap = newSnapshotRecord(pool, txg, rec, name, { object: rec.object, layerUsed: rec.referenced });
  head.clearDirty();
  pool.objects.set(snap.id, head);
  const fresh = new ObjectState(newDnode(head.blockSize, head.dnode.nblocks), pool.io);
  pool.objects.set(rec.id, fresh);
  rec.object = dnodeToJson(fresh.dnode);
  rec.referenced = 0;
  rec.logical = 0;
  rec.written = 0;
  rec.snapshots.push(snap);
  pool.registerLayers();
  bumpGeneration(pool, rec);
}

/** Syncing context: free the head's blocks and start an empty one (of `nblocks`, default the head's). */
function resetHeadLayer(pool: Pool, rec: DatasetRecord, nblocks?: number): void {
  const head = headObject(pool, rec);
  head.clearDirty();
  pool.freeQueue.push({ dnode: head.dnode, after: 0, deads: [] });
  const fresh = new ObjectState(newDnode(head.blockSize, nblocks ?? head.dnode.nblocks), pool.io);
  pool.objects.set(rec.id, fresh);
  rec.object = dnodeToJson(fresh.dnode);
  rec.referenced = 0;
  rec.logical = 0;
  rec.written = 0;
}

/**
 * Delete snapshot `snap`: its layer's blocks that the layer above (the next
 * snapshot's, or the head) lacks move up by pointer, the rest is freed, in
 * one sync task with I/O paused: O(metadata) whatever the layer's size,
 * and a crash sees the layer either whole or merged.
 */
async function deleteOne(pool: Pool, rec: DatasetRecord, snap: SnapshotRecord, command?: string): Promise<void> {
  const name = pool.nameOfId(rec.id)!;
  const full = `${name}@${snap.name}`;
  if (snap.clones?.length) throw err.busy(`cannot destroy snapshot '${full}': it has dependent clones (${snap.clones.join(', ')})`);
  await runtimeOf(pool).gate.exclusive(() =>
    pool.syncTask(async (txg) => {
      const i = rec.snapshots.indexOf(snap);
      if (i < 0) throw err.noent(`snapshot '${full}' does not exist`);
      const upper = rec.snapshots[i + 1];
      await transplantSync(pool, txg, {
        name,
        src: layerObject(pool, snap.id),
        dst: upper ? layerObject(pool, upper.id) : headObject(pool, rec),
        owner: upper ? layerOwner(pool, txg, upper) : headOwner(pool, txg, rec),
        take: (_b, above) => !above,
      });
      rec.snapshots.splice(i, 1);
      forgetLayer(pool, snap.id);
      pool.registerLayers();
      bumpGeneration(pool, rec);
    }, command ?? `destroy ${full}`),
  );
}

function rowWritePath(pool: Pool, rec: DatasetRecord): WritePath {
  const rt = runtimeOf(pool);
  const acct = pool.account(rec.id);
  let idx: RowIndex | null = null;
  const current = async () => (idx = await headIndex(pool, rec));
  return {
    enter: () => rt.gate.enter(),
    leave: () => rt.gate.leave(),
    ready: async () => void (await current()),
    // Called after ready() in the same gated operation: the index is current.
    hasBelow: (b) => !!idx && b < idx.owner.length && idx.owner[b] !== 0,
    readBelow: async (ids, forWrite) => readThrough(pool, await current(), ids, acct, forWrite),
    prepare: async () => null,
    record: () => 0,
    copiesOut: false,
  };
}

export const rowStrategy: SnapshotStrategy = {
  mode: 'row',

  snapshot: (pool, names, command) => snapshotEach(pool, names, command, takeRowSnapshot),

  destroy: (pool, names, command) => destroyEach(pool, names, command, deleteOne),

  async rollback(pool, full, opts) {
    const { rec, later } = rollbackTarget(pool, full, opts.destroyLater);
    await serialized(pool, () =>
      runtimeOf(pool).gate.exclusive(() =>
        pool.syncTask(async () => {
          for (const s of later) {
            rec.snapshots.splice(rec.snapshots.indexOf(s), 1);
            dropLayer(pool, s.id);
          }
          resetHeadLayer(pool, rec);
          pool.registerLayers();
          bumpGeneration(pool, rec);
        }, opts.command ?? `rollback ${full}`),
      ),
    );
  },

  async clone(pool, full, targets, props, command) {
    const local = validateClone(pool, full, targets, props);
    await pool.syncTask(async (txg) => {
      const { rec: o, snap } = findSnap(pool, full);
      for (const t of targets) if (pool.dir.has(t)) throw err.exist(`cannot create '${t}': dataset already exists`);
      const layer = layerObject(pool, snap.id);
      for (const t of targets) {
        const dnode = newDnode(layer.blockSize, layer.dnode.nblocks);
        const volsize = String(dnode.nblocks * dnode.blockSize);
        const rec = pool.dir.add(t, 'volume', txg, { ...local, volsize, volblocksize: o.props['volblocksize']!, snapmode: 'row' }, dnodeToJson(dnode));
        rec.origin = full;
        rec.written = 0;
        (snap.clones ??= []).push(t);
        pool.objects.set(rec.id, new ObjectState(dnode, pool.io));
      }
    }, command ?? `clone ${full} ${targets.join(' ')}`);
  },

  async promote(pool, name) {
    // A volume that is no clone: the same answer as native's (and cow's).
    if (!pool.dir.get(name).origin) throw err.inval(`cannot promote '${name}': not a cloned volume`);
    throw err.notsup(`cannot promote '${name}': snapmode=row clones read their origin's layers by reference; promote is not supported (destroy the origin's other dependents or use snapmode=native)`);
  },

  async resetToOrigin(pool, vol, command) {
    const rec = pool.dir.get(vol);
    if (!rec.origin) throw err.inval(`'${vol}' is not a clone`);
    if (rec.snapshots.length) throw err.busy(`cannot reset '${vol}' to its origin: it has snapshots (${rec.snapshots.map((s) => s.name).join(', ')})`);
    await serialized(pool, () =>
      runtimeOf(pool).gate.exclusive(() =>
        pool.syncTask(async () => {
          // The origin's size too (the clone may have grown since), as native's reset does.
          const origin = layerObject(pool, findSnap(pool, rec.origin!).snap.id);
          resetHeadLayer(pool, rec, origin.dnode.nblocks);
          rec.props['volsize'] = String(origin.dnode.nblocks * origin.blockSize);
          bumpGeneration(pool, rec);
        }, command ?? `rollback --to-origin ${vol}`),
      ),
    );
  },

  async diff(pool, from, to) {
    const a = findSnap(pool, from);
    const layers: ObjectState[] = [];
    let end = a.rec.snapshots.length;
    if (to.includes('@')) {
      const b = findSnap(pool, to);
      if (b.rec !== a.rec) throw err.inval(`'${from}' and '${to}' are not snapshots of the same dataset`);
      if (b.index < a.index) throw err.inval(`'${to}' is older than '${from}'`);
      end = b.index + 1;
    } else {
      if (pool.dir.get(to) !== a.rec) throw err.inval(`'${from}' is not a snapshot of '${to}'`);
      layers.push(headObject(pool, a.rec));
    }
    for (let j = a.index + 1; j < end; j++) layers.push(layerObject(pool, a.rec.snapshots[j]!.id));
    const changed = new Set<number>();
    for (const l of layers) for (const b of (await presenceOf(l)).ones()) changed.add(b);
    return rangesOf([...changed], headObject(pool, a.rec).blockSize) as DiffRange[];
  },

  openSnapshot(pool, full) {
    const { rec, snap } = findSnap(pool, full);
    const layer = layerObject(pool, snap.id);
    const bs = layer.blockSize;
    return new LayeredView({
      pool,
      size: layer.dnode.nblocks * bs,
      bs,
      check: stillThere(full, rec, snap),
      gate: runtimeOf(pool).gate,
      source: async () => {
        const idx = await viewIndex(pool, rec, snap);
        return {
          read: (ids) => readThrough(pool, idx, ids),
          allocated: async (first, end) => {
            const out: number[] = [];
            for (let b = first; b < end && b < idx.owner.length; b++) if (idx.owner[b]) out.push(b);
            return out;
          },
        };
      },
    });
  },

  writePath: (pool, rec) => rowWritePath(pool, rec),
};

export { Bitmap };
