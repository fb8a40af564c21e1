/**
 * What cow and row share: layer objects (a snapshot's own tree in the
 * pool, see Pool.layers), their presence bitmaps, reading the newest
 * version of blocks, and the per-pool runtime (one I/O gate, per-dataset
 * generations that structural changes bump so cached indexes rebuild),
 * and the loops that snapshot several volumes or destroy several snapshots
 * (snapshotEach, destroyEach; index.ts's snapshotAll uses the first too).
 * Moving blocks between trees is transplant.ts.
 *
 * Layers keep all-zero blocks as data (sync.ts writes them with noHole):
 * in a layer a hole means "not here, look elsewhere", never "zeroes".
 */
import { err, promiseOf } from '../errors.js';
import type { Pool } from '../pool/pool.js';
import type { BlockPointer } from '../pool/blkptr.js';
import type { ObjectState } from '../pool/object/object-state.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';
import { checkDestroySnapshot, findSnap, recheckNewSnapshots, splitSnap, validateNewSnapshots } from '../pool/dataset/snapshots.js';
import type { IoAccount } from '../pool/io/account.js';
import { Bitmap } from './bitmap.js';
import { Gate } from './gate.js';

export interface PoolRuntime {
  /** cow/row I/O enters; snapshot, delete, rollback of cow/row volumes close it. */
  gate: Gate;
  /** Per dataset id: bumped by each structural change of it (snapshot, merge, rollback, reset). */
  gens: Map<number, number>;
  /** Caches (cow stores, row indexes) with the generations of the datasets they were built from. */
  cache: Map<string, { version: string; value: Promise<unknown>; owner?: DatasetRecord }>;
  /** Merges and rollbacks run one at a time per pool. */
  merging: Promise<void>;
}

const runtimes = new WeakMap<Pool, PoolRuntime>();

export function runtimeOf(pool: Pool): PoolRuntime {
  let r = runtimes.get(pool);
  if (!r) runtimes.set(pool, (r = { gate: new Gate(), gens: new Map(), cache: new Map(), merging: Promise.resolve() }));
  return r;
}

/** The generations of `deps`, as one comparable string. */
export function versionOf(pool: Pool, deps: readonly DatasetRecord[]): string {
  const gens = runtimeOf(pool).gens;
  return deps.map((d) => `${d.id}:${gens.get(d.id) ?? 0}`).join(',');
}

/** A cached value for `key`, rebuilt after a structural change of any dataset in `deps`. */
export function cached<T>(pool: Pool, key: string, deps: readonly DatasetRecord[], build: () => Promise<T>): Promise<T> {
  const rt = runtimeOf(pool);
  const version = versionOf(pool, deps);
  const hit = rt.cache.get(key);
  if (hit && hit.version === version) return hit.value as Promise<T>;
  const value = build();
  rt.cache.set(key, { version, value, owner: deps[0] });
  value.catch(() => rt.cache.delete(key));
  // Builds are rare: drop what destroyed datasets left behind (an index is 2 bytes per block).
  const live = new Set(pool.dir.datasets.values());
  for (const [k, e] of rt.cache) if (e.owner && !live.has(e.owner)) rt.cache.delete(k);
  return value;
}

/** A structural change of `rec`: its caches, and those of clones built on its layers, rebuild. */
export function bumpGeneration(pool: Pool, rec: DatasetRecord): void {
  const gens = runtimeOf(pool).gens;
  gens.set(rec.id, (gens.get(rec.id) ?? 0) + 1);
}

/** Run `fn` alone among this pool's merges and rollbacks. */
export async function serialized<T>(pool: Pool, fn: () => Promise<T>): Promise<T> {
  const rt = runtimeOf(pool);
  const prev = rt.merging;
  let done!: () => void;
  rt.merging = new Promise<void>((r) => (done = r));
  await prev;
  try {
    return await fn();
  } finally {
    done();
  }
}

/**
 * Take snapshots `vol@name` (validated here, rechecked in syncing context)
 * atomically in one txg, with the pool's layered I/O paused: `take` records
 * each in syncing context (per volume, so any mix of strategies).
 */
export async function snapshotEach(
  pool: Pool,
  names: string[],
  command: string | undefined,
  take: (pool: Pool, txg: number, rec: DatasetRecord, name: string) => void,
): Promise<void> {
  validateNewSnapshots(pool, names);
  await serialized(pool, () =>
    runtimeOf(pool).gate.exclusive(() =>
      pool.syncTask(async (txg) => {
        recheckNewSnapshots(pool, names);
        for (const full of names) {
          const [ds, name] = splitSnap(full);
          take(pool, txg, pool.dir.get(ds), name);
        }
      }, command ?? `snapshot ${names.join(' ')}`),
    ),
  );
}

/** Destroy snapshots one after the other, alone among the pool's merges: `deleteOne` merges each (refusals checked by the caller). */
export async function destroyEach(
  pool: Pool,
  names: string[],
  command: string | undefined,
  deleteOne: (pool: Pool, rec: DatasetRecord, snap: SnapshotRecord, command?: string) => Promise<void>,
): Promise<void> {
  await serialized(pool, async () => {
    for (const full of names) {
      const { rec, snap } = findSnap(pool, full);
      await deleteOne(pool, rec, snap, command);
    }
  });
}

/**
 * The start of a cow or row rollback to `full`: the snapshot, and the later
 * ones that must go with it. Without `destroyLater` later snapshots refuse
 * the rollback (EEXIST, as zfs rollback without -r); with it each must be
 * destroyable (not held, not cloned), as native's rollback -r checks.
 */
export function rollbackTarget(pool: Pool, full: string, destroyLater: boolean | undefined) {
  const { rec, index, ds } = findSnap(pool, full);
  const later = rec.snapshots.slice(index + 1);
  if (later.length && !destroyLater) {
    throw err.exist(`cannot rollback to '${full}': more recent snapshots exist; use -r to destroy them: ${later.map((s) => `${ds}@${s.name}`).join(', ')}`);
  }
  for (const s of later) checkDestroySnapshot(pool, `${ds}@${s.name}`);
  return { rec, ds, snap: rec.snapshots[index]!, later };
}

const zeros = new Map<number, Buffer>();

/** A shared all-zero block: recorded as data in layers; never mutate it. */
export function zeroBlock(bs: number): Buffer {
  let z = zeros.get(bs);
  if (!z) zeros.set(bs, (z = Buffer.alloc(bs)));
  return z;
}


export function layerObject(pool: Pool, snapId: number): ObjectState {
  const o = pool.objects.get(snapId);
  if (!o) throw err.corrupt(`snapshot layer object ${snapId} is not loaded`);
  return o;
}

export function headObject(pool: Pool, rec: DatasetRecord): ObjectState {
  const o = pool.objects.get(rec.id);
  if (!o) throw err.inval(`dataset ${rec.id} is not a volume`);
  return o;
}

/**
 * Blocks present in an object (in [first, end) when given): its committed tree, then its
 * dirty maps oldest txg first.
 * The tree and the dirty maps are taken together, before the walk awaits: a txg that syncs
 * meanwhile moves its blocks from its dirty map (deleted from obj.dirty) into a newer tree,
 * and a walk of the old tree followed by a look at the remaining dirty maps saw them in
 * neither (a cow store then "lacked" blocks it held, and the next write over one copied the
 * head's newer contents over the snapshot's).
 */
export async function presenceOf(obj: ObjectState, first = 0, end = obj.dnode.nblocks): Promise<Bitmap> {
  const dnode = obj.dnode;
  const dirty = [...obj.dirty].sort((a, b) => a[0] - b[0]);
  const bits = new Bitmap(Math.max(dnode.nblocks, end));
  await obj.tree.walk(dnode, first, end, (b) => bits.set(b));
  for (const [, m] of dirty) {
    for (const [b, d] of m) if (b >= first && b < end) (d ? bits.set(b) : bits.clear(b));
  }
  return bits;
}

/**
 * Newest contents of blocks of one object (dirty first, then one batched
 * tree read); null for holes. Device reads are counted against `acct`
 * (as write-path reads when `forWrite`). With `owned`, blocks read from a
 * device are the caller's own (`owned[i]` true; see BlockPipeline.readMany):
 * nothing else holds them, so the caller may modify them in place. With
 * `held`, dirty blocks returned are held (see `mine` below) and listed there.
 */
export function readBlocks(...args: Parameters<typeof readBlocksNow>): Promise<(Buffer | null)[]> {
  return promiseOf(() => readBlocksNow(...args));
}

/**
 * readBlocks, answering at once (no promise) when no block needs a device read or
 * an uncached indirect block: a 4K write's base is usually dirty or in the ARC.
 */
export function readBlocksNow(
  pool: Pool,
  obj: ObjectState,
  ids: readonly number[],
  acct?: IoAccount,
  forWrite = false,
  owned?: boolean[],
  held?: Buffer[],
): (Buffer | null)[] | Promise<(Buffer | null)[]> {
  const out: (Buffer | null)[] = new Array(ids.length).fill(null);
  const need: number[] = [];
  // A dirty block that is a view of a lent write payload is copied now, in the tick it is
  // found: its txg may sync while the caller awaits, and its owner then reuses the payload.
  // Any other dirty block given to a caller that collects `held` is held (BlockPipeline.hold)
  // in that same tick, for the same reason: the caller unholds each once it has copied it.
  const mine = (d: Buffer | null): Buffer | null => {
    if (d && pool.io.isLent(d)) return Buffer.from(d);
    if (d && held) {
      pool.io.hold(d);
      held.push(d);
    }
    return d;
  };
  ids.forEach((b, i) => {
    const d = obj.dirtyBlock(b);
    if (owned) owned[i] = false;
    if (d !== undefined) out[i] = mine(d);
    else need.push(i);
  });
  if (!need.length) return out;
  // Found through cached indirect blocks, block pointers cost no await (getBps).
  const bps = obj.tree.getBps(obj.dnode, need.map((i) => ids[i]!));
  if (!Array.isArray(bps)) return bps.then((got) => readData(got, true));
  return readData(bps, false);

  /** `waited`: the block pointers took an await (dirty maps may have changed since the look above). */
  function readData(bps: (BlockPointer | null)[], waited: boolean): (Buffer | null)[] | Promise<(Buffer | null)[]> {
    // readMany counts the blocks it finds missing from the ARC (one lookup per block).
    const u = { ops: 0, bytes: 0 };
    const own: boolean[] | undefined = owned ? [] : undefined;
    const count = () => {
      if (acct && forWrite) {
        acct.deviceReadOpsForWrites += u.ops;
        acct.deviceReadBytesForWrites += u.bytes;
      } else if (acct) {
        acct.deviceReadOps += u.ops;
        acct.deviceReadBytes += u.bytes;
      }
    };
    const place = (datas: (Buffer | null)[], waited: boolean) => {
      need.forEach((i, k) => {
        // A write may have landed while we waited: prefer it.
        const now = waited ? obj.dirtyBlock(ids[i]!) : undefined;
        out[i] = now !== undefined ? mine(now) : datas[k]!;
        if (owned) owned[i] = now === undefined && own![k] === true && datas[k] !== null;
      });
      return out;
    };
    let got: (Buffer | null)[] | Promise<(Buffer | null)[]>;
    try {
      got = pool.io.readManyNow(bps, u, own);
    } catch (e) {
      count();
      throw e;
    }
    if (Array.isArray(got)) {
      count();
      return place(got, waited);
    }
    return got.then(
      (datas) => {
        count();
        return place(datas, true);
      },
      (e: unknown) => {
        count();
        throw e;
      },
    );
  }
}

/** Free a layer object's whole tree in syncing context and forget it. */
export function dropLayer(pool: Pool, snapId: number): void {
  const obj = pool.objects.get(snapId);
  if (obj) {
    obj.clearDirty();
    pool.freeQueue.push({ dnode: obj.dnode, after: 0, deads: [] });
  }
  pool.objects.delete(snapId);
  pool.layers.delete(snapId);
}
