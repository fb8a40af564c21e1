/**
 * Moving blocks between the trees of one volume without copying data: a
 * merge (cow and row snapshot deletes) or a copy-back (cow rollback) puts
 * the source's block pointers into the destination tree and frees the
 * source tree around them, all in one sync task, so it is one txg whatever
 * the size and a crash sees either the old trees or the new ones.
 *
 * Ownership: a block is in exactly one tree of a cow or row volume, except
 * inside the task that moves it (it leaves the source, whose tree is freed
 * here, skipping moved blocks by identity: first DVA and birth txg).
 * Blocks of the destination the move replaces are freed (cow and row trees
 * never share blocks with snapshots of their own: see docs/FORMAT.md).
 */
import { err } from '../errors.js';
import type { Pool } from '../pool/pool.js';
import { bpAsize, dvaKey, type BlockPointer } from '../pool/blkptr.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';
import { dnodeToJson, type Dnode } from '../pool/object/dnode.js';
import type { ObjectState } from '../pool/object/object-state.js';

/** Where a moved block's space is accounted, and how the destination's new tree is published. */
export interface TreeOwner {
  born(bp: BlockPointer): void;
  /** A destination block the move replaced (or an indirect block rewritten): free it. */
  kill(bp: BlockPointer): void;
  publish(d: Dnode): void;
}

const key = (bp: BlockPointer) => `${dvaKey(bp.dvas[0]!)}@${bp.birth}`;

/** A volume's head as a destination (rollback of cow, merge of row's newest layer). */
export function headOwner(pool: Pool, txg: number, rec: DatasetRecord): TreeOwner {
  return {
    born: (bp) => {
      rec.referenced += bpAsize(bp);
      rec.written = (rec.written ?? 0) + bpAsize(bp);
      if (bp.level === 0) rec.logical += bp.lsize;
    },
    kill: (bp) => {
      rec.referenced -= bpAsize(bp);
      rec.written = Math.max(0, (rec.written ?? 0) - bpAsize(bp));
      if (bp.level === 0) rec.logical -= bp.lsize;
      pool.io.free(bp, txg, true);
    },
    publish: (d) => void (rec.object = dnodeToJson(d)),
  };
}

/** A snapshot's store or layer as a destination. */
export function layerOwner(pool: Pool, txg: number, snap: SnapshotRecord): TreeOwner {
  return {
    born: (bp) => void (snap.layerUsed = (snap.layerUsed ?? 0) + bpAsize(bp)),
    kill: (bp) => {
      snap.layerUsed = Math.max(0, (snap.layerUsed ?? 0) - bpAsize(bp));
      pool.io.free(bp, txg, true);
    },
    publish: (d) => void (snap.object = dnodeToJson(d)),
  };
}

export interface TransplantPlan {
  /** The volume (for its write policy: indirect blocks are written anew). */
  name: string;
  src: ObjectState;
  dst: ObjectState;
  owner: TreeOwner;
  /** Move source block b? Given the destination's committed pointer there (null: a hole). */
  take(b: number, dstBp: BlockPointer | null): boolean;
}

/**
 * Syncing context, after this txg's data is written: move the chosen
 * level-0 blocks of `src` into `dst`, then free the rest of `src`'s tree
 * (its indirect blocks and the blocks not moved). The caller then forgets
 * `src` (drops the layer, or gives it an empty tree). Returns blocks moved.
 */
export async function transplantSync(pool: Pool, txg: number, plan: TransplantPlan): Promise<number> {
  const { src, dst } = plan;
  // Callers hold the I/O gate closed: nothing can be dirty in the source past this txg.
  for (const m of src.dirty.values()) if (m.size) throw err.busy('cannot move blocks out of a tree with unsynced writes');
  const entries: [number, BlockPointer][] = [];
  await src.tree.walk(src.dnode, 0, src.dnode.nblocks, (b, bp) => void entries.push([b, bp]));
  // One walk of the destination (not a lookup per block): what it holds where the source does.
  const there = new Map<number, BlockPointer>();
  if (entries.length) {
    const first = entries[0]![0];
    const end = entries[entries.length - 1]![0] + 1;
    await dst.tree.walk(dst.dnode, first, end, (b, bp) => void there.set(b, bp));
  }
  const placed = new Map<number, BlockPointer>();
  for (const [b, bp] of entries) {
    if (b >= dst.dnode.nblocks) continue;
    if (plan.take(b, there.get(b) ?? null)) placed.set(b, bp);
  }
  const acct = pool.account(pool.dir.get(plan.name).id);
  if (placed.size) {
    const nd = await dst.tree.sync(
      dst.dnode,
      new Map(),
      {
        props: pool.writeProps(plan.name, txg),
        born: (bp) => {
          // Only indirect blocks are written here; moved data is not device I/O.
          if (bp.level > 0) {
            acct.deviceWriteOps++;
            acct.deviceWriteBytes += bpAsize(bp);
          }
          plan.owner.born(bp);
        },
        kill: (bp) => plan.owner.kill(bp),
      },
      placed,
    );
    dst.dnode = { ...nd, nblocks: dst.dnode.nblocks };
    plan.owner.publish(dst.dnode);
  }
  const moved = new Set([...placed.values()].map(key));
  await src.tree.walkAll(src.dnode, (bp) => {
    if (bp.level === 0 && moved.has(key(bp))) return;
    pool.io.free(bp, txg, true);
  });
  return placed.size;
}

/** Forget a layer whose blocks were moved or freed by transplantSync (nothing left to free). */
export function forgetLayer(pool: Pool, snapId: number): void {
  pool.objects.delete(snapId);
  pool.layers.delete(snapId);
}
