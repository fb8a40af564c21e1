/**
 * cow: classic copy-on-write snapshots (LVM's old snapshots).
 *
 * Theory. Live data stays in the volume's head. Each snapshot S_i owns a
 * store: a sparse layer object holding, for some blocks, their contents at
 * the time of S_i. The first write to block b after the newest snapshot
 * S_n copies b's current contents into S_n's store, in the same txg as the
 * write (one read and two writes: the "3x" of cow). So:
 *
 *   S_i's store holds b  =>  it holds b as of S_i;
 *   S_i's store lacks b  =>  b did not change between S_i and S_{i+1}.
 *
 * Hence S_i's view of b is the first store among S_i, S_{i+1}, ..., S_n
 * holding b, else the head. Deleting S_i copies the blocks of its store
 * that S_{i-1}'s store lacks into S_{i-1}'s (they are S_{i-1}'s view, found
 * through S_i until now), then frees S_i's store: every batch keeps every
 * view, so a crash in between loses nothing. Rollback to the newest
 * snapshot copies its store back into the head and empties the store;
 * rollback further back first deletes the later snapshots (merging), so it
 * too is safe at every moment.
 *
 * Clones are refused: a cow snapshot is not a tree of its own to share.
 */
import { err } from '../errors.js';
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';
import { dnodeToJson, newDnode } from '../pool/object/dnode.js';
import type { ObjectState } from '../pool/object/object-state.js';
import { findSnap, newSnapshotRecord, type DiffRange } from '../pool/dataset/snapshots.js';
import { Bitmap } from './bitmap.js';
import {
  bumpGeneration,
  cached,
  destroyEach,
  dropLayer,
  headObject,
  layerObject,
  presenceOf,
  readBlocks,
  rollbackTarget,
  runtimeOf,
  serialized,
  snapshotEach,
  zeroBlock,
} from './layers.js';
import type { Prepared, SnapshotStrategy, WritePath } from './strategy.js';
import { LayeredView, stillThere } from './view.js';
import { forgetLayer, headOwner, layerOwner, transplantSync } from './transplant.js';
import { rangesOf } from './ranges.js';

interface Store {
  snap: SnapshotRecord;
  obj: ObjectState;
  has: Bitmap;
}

/** The stores of a cow volume, oldest first, with presence bitmaps (kept live for the newest). */
function storesOf(pool: Pool, rec: DatasetRecord): Promise<Store[]> {
  return cached(pool, `cow:${rec.id}`, [rec], async () => {
    const out: Store[] = [];
    for (const snap of rec.snapshots) {
      const obj = layerObject(pool, snap.id);
      out.push({ snap, obj, has: await presenceOf(obj) });
    }
    return out;
  });
}

/** Syncing context: a new snapshot with an empty store (the head is its view until written). */
export function takeCowSnapshot(pool: Pool, txg: number, rec: DatasetRecord, name: string): void {
  const head = headObject(pool, rec);
  const snap = newSnapshotRecord(pool, txg, rec, name, { object: dnodeToJson(newDnode(head.blockSize, head.dnode.nblocks)), layerUsed: 0 });
  rec.snapshots.push(snap);
  rec.written = 0;
  pool.registerLayers();
  bumpGeneration(pool, rec);
}

function cowWritePath(pool: Pool, rec: DatasetRecord): WritePath {
  const rt = runtimeOf(pool);
  const acct = pool.account(rec.id);
  return {
    enter: () => rt.gate.enter(),
    leave: () => rt.gate.leave(),
    ready: async () => void (await storesOf(pool, rec)),
    hasBelow: () => false,
    readBelow: async (ids) => ids.map(() => null),
    copiesOut: true,
    async prepare(ids) {
      const stores = await storesOf(pool, rec);
      const cur = stores[stores.length - 1];
      if (!cur) return null;
      const need = ids.filter((b) => b < cur.has.size && !cur.has.get(b));
      if (!need.length) return null;
      const datas = await readBlocks(pool, headObject(pool, rec), need, acct, true);
      return { items: need.map((b, i) => ({ b, data: datas[i] ?? null })), store: cur.obj };
    },
    record(p, t) {
      if (!p) return 0;
      // The generation cannot change while a write is inside the gate: prepare()'s stores are current.
      const stores = syncStores.get(rec.id);
      const cur = stores?.[stores.length - 1];
      if (!cur) return 0;
      const m = cur.obj.mapFor(t);
      let n = 0;
      for (const { b, data } of p.items) {
        if (cur.has.get(b)) continue; // another write copied it first
        m.set(b, data ? Buffer.from(data) : zeroBlock(cur.obj.blockSize));
        cur.has.set(b);
        n++;
      }
      return n;
    },
  };
}

/**
 * The stores as last resolved for each dataset, for record(), which must
 * not await. prepare() always runs first in the same write (and resolves
 * the cache), so this is the current generation's list.
 */
const syncStores = new Map<number, Store[]>();

async function resolveStores(pool: Pool, rec: DatasetRecord): Promise<Store[]> {
  const s = await storesOf(pool, rec);
  syncStores.set(rec.id, s);
  return s;
}

/**
 * Contents of blocks in the view of snapshot `index`: the first store from it on holding
 * the block, else the head. A guest write may overwrite a head block while we read it
 * (readBlocks then even prefers the newer dirty data); that write copied the old contents
 * into the newest store in the same tick, so blocks read from the head are looked up again
 * afterwards and, if a store has them now, read from it (stores never change a block once
 * they hold it). Without this a snapshot read racing a write returned the write's data.
 */
async function viewRead(pool: Pool, rec: DatasetRecord, index: number, ids: number[]): Promise<(Buffer | null)[]> {
  const stores = await storesOf(pool, rec);
  const head = headObject(pool, rec);
  const sourceOf = (b: number): ObjectState => {
    for (let j = index; j < stores.length; j++) if (stores[j]!.has.get(b)) return stores[j]!.obj;
    return head;
  };
  const out: (Buffer | null)[] = new Array(ids.length).fill(null);
  /** Read the given entries from their current sources; returns those read from the head. */
  const readFrom = async (which: number[]): Promise<number[]> => {
    const groups = new Map<ObjectState, number[]>();
    for (const i of which) {
      const src = sourceOf(ids[i]!);
      let g = groups.get(src);
      if (!g) groups.set(src, (g = []));
      g.push(i);
    }
    await Promise.all(
      [...groups].map(async ([obj, idx]) => {
        const datas = await readBlocks(pool, obj, idx.map((i) => ids[i]!));
        idx.forEach((i, k) => (out[i] = datas[k] ?? null));
      }),
    );
    return groups.get(head) ?? [];
  };
  const fromHead = await readFrom(ids.map((_, i) => i));
  const moved = fromHead.filter((i) => sourceOf(ids[i]!) !== head);
  if (moved.length) await readFrom(moved);
  return out;
}

/**
 * Delete snapshot `snap`: its store's blocks that the previous snapshot's
 * store lacks move there by pointer (they are that snapshot's view, found
 * through this store until now), the rest is freed; one sync task with I/O
 * paused, so O(metadata) and crash-atomic.
 */
async function deleteOne(pool: Pool, rec: DatasetRecord, snap: SnapshotRecord, command?: string): Promise<void> {
  const name = pool.nameOfId(rec.id)!;
  const full = `${name}@${snap.name}`;
  await runtimeOf(pool).gate.exclusive(() =>
    pool.syncTask(async (txg) => {
      const i = rec.snapshots.indexOf(snap);
      if (i < 0) throw err.noent(`snapshot '${full}' does not exist`);
      const prev = rec.snapshots[i - 1];
      if (prev) {
        await transplantSync(pool, txg, {
          name,
          src: layerObject(pool, snap.id),
          dst: layerObject(pool, prev.id),
          owner: layerOwner(pool, txg, prev),
          take: (_b, there) => !there,
        });
        forgetLayer(pool, snap.id);
      } else dropLayer(pool, snap.id);
      rec.snapshots.splice(i, 1);
      pool.registerLayers();
      bumpGeneration(pool, rec);
    }, command ?? `destroy ${full}`),
  );
}

export const cowStrategy: SnapshotStrategy = {
  mode: 'cow',

  snapshot: (pool, names, command) => snapshotEach(pool, names, command, takeCowSnapshot),

  destroy: (pool, names, command) => destroyEach(pool, names, command, deleteOne),

  async rollback(pool, full, opts) {
    const { rec, ds, snap, later } = rollbackTarget(pool, full, opts.destroyLater);
    await serialized(pool, async () => {
      // Newest first: each merges into the one before, down to the target.
      for (const s of [...later].reverse()) await deleteOne(pool, rec, s, opts.command);
      // The store goes back into the head by pointer (replacing the head's blocks), and the
      // snapshot starts over with an empty store: one txg, I/O paused.
      await runtimeOf(pool).gate.exclusive(async () => {
        await pool.syncTask(async (txg) => {
          const head = headObject(pool, rec);
          await transplantSync(pool, txg, { name: ds, src: layerObject(pool, snap.id), dst: head, owner: headOwner(pool, txg, rec), take: () => true });
          forgetLayer(pool, snap.id);
          snap.object = dnodeToJson(newDnode(head.blockSize, head.dnode.nblocks));
          snap.layerUsed = 0;
          pool.registerLayers();
          bumpGeneration(pool, rec);
        }, opts.command ?? `rollback ${full}`);
      });
    });
  },

  async clone(_pool, full) {
    throw err.notsup(`cannot clone '${full}': snapmode=cow snapshots cannot be cloned (their blocks live partly in the volume itself); use snapmode=native or row for templates`);
  },

  async promote(_pool, name) {
    throw err.inval(`cannot promote '${name}': not a cloned volume`);
  },

  async resetToOrigin(_pool, vol) {
    throw err.inval(`'${vol}' is not a clone`);
  },

  async diff(pool, from, to) {
    const a = findSnap(pool, from);
    let end = a.rec.snapshots.length;
    if (to.includes('@')) {
      const b = findSnap(pool, to);
      if (b.rec !== a.rec) throw err.inval(`'${from}' and '${to}' are not snapshots of the same dataset`);
      if (b.index < a.index) throw err.inval(`'${to}' is older than '${from}'`);
      end = b.index;
    } else if (pool.dir.get(to) !== a.rec) throw err.inval(`'${from}' is not a snapshot of '${to}'`);
    const stores = await storesOf(pool, a.rec);
    const changed = new Set<number>();
    for (let j = a.index; j < end; j++) for (const b of stores[j]!.has.ones()) changed.add(b);
    return rangesOf([...changed], headObject(pool, a.rec).blockSize) as DiffRange[];
  },

  openSnapshot(pool, full) {
    const { rec, snap } = findSnap(pool, full);
    const head = headObject(pool, rec);
    const bs = head.blockSize;
    const rt = runtimeOf(pool);
    return new LayeredView({
      pool,
      size: head.dnode.nblocks * bs,
      bs,
      check: stillThere(full, rec, snap),
      gate: rt.gate,
      source: async () => {
        const index = rec.snapshots.indexOf(snap);
        if (index < 0) throw err.noent(`snapshot '${full}' was destroyed`);
        return {
          read: (ids) => viewRead(pool, rec, index, ids),
          allocated: async (first, end) => {
            const stores = await storesOf(pool, rec);
            // presenceOf takes the head's dirty maps before walking: a txg syncing during the
            // walk must not hide the blocks it moves from a dirty map into the tree.
            const hit = await presenceOf(headObject(pool, rec), first, end);
            for (let j = index; j < stores.length; j++) for (const b of stores[j]!.has.ones(first, end)) hit.set(b);
            return [...hit.ones(first, end)];
          },
        };
      },
    });
  },

  writePath: (pool, rec) => {
    const wp = cowWritePath(pool, rec);
    const prepare = wp.prepare;
    wp.prepare = async (ids) => {
      await resolveStores(pool, rec);
      return prepare(ids);
    };
    return wp;
  },
};

export type { Prepared };
