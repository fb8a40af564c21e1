/**
 * Choosing a volume's strategy, and the operations that may span several
 * volumes (snapshot -r, destroy of a list) split by strategy.
 */
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord } from '../pool/dataset/directory.js';
import { findSnap, reclaimOf, splitSnap, takeSnapshotSync, validateNewSnapshots } from '../pool/dataset/snapshots.js';
import { bpAsize } from '../pool/blkptr.js';
import { headObject, layerObject, snapshotEach } from './layers.js';
import { nativeStrategy } from './native.js';
import { cowStrategy, takeCowSnapshot } from './cow.js';
import { rowStrategy, takeRowSnapshot } from './row.js';
import type { SnapMode, SnapshotStrategy } from './strategy.js';

export type { SnapMode, SnapshotStrategy, WritePath } from './strategy.js';

const STRATEGIES: Record<SnapMode, SnapshotStrategy> = { native: nativeStrategy, cow: cowStrategy, row: rowStrategy };

export function modeOf(rec: DatasetRecord): SnapMode {
  const m = rec.props['snapmode'];
  return m === 'cow' || m === 'row' ? m : 'native';
}

export function strategyOf(rec: DatasetRecord): SnapshotStrategy {
  return STRATEGIES[modeOf(rec)];
}

/** Strategy of the dataset named (or of the dataset of a snapshot name). */
export function strategyFor(pool: Pool, name: string): SnapshotStrategy {
  const ds = name.includes('@') ? splitSnap(name)[0] : name;
  return strategyOf(pool.dir.get(ds));
}

/**
 * Snapshots of any mix of strategies, atomically in one txg: cow and row
 * volumes pause their I/O around it (their copy-out target or top layer
 * changes), native ones need nothing.
 */
export async function snapshotAll(pool: Pool, names: string[], command?: string): Promise<void> {
  validateNewSnapshots(pool, names);
  const modes = new Set(names.map((n) => strategyFor(pool, n).mode));
  if (modes.size === 1 && modes.has('native')) return nativeStrategy.snapshot(pool, names, command);
  // As cow's and row's own snapshot, with each volume's take (snapshotEach validates again: the same answer).
  await snapshotEach(pool, names, command, (pool, txg, rec, name) => {
    const mode = modeOf(rec);
    if (mode === 'cow') takeCowSnapshot(pool, txg, rec, name);
    else if (mode === 'row') takeRowSnapshot(pool, txg, rec, name);
    else takeSnapshotSync(pool, txg, rec, name);
  });
}

/** Destroy snapshots of any strategies (refusals already checked): native ones batched as before, layered ones merged. */
export async function destroyAll(pool: Pool, names: string[], command?: string): Promise<void> {
  const native = names.filter((n) => strategyFor(pool, n).mode === 'native');
  if (native.length) await nativeStrategy.destroy(pool, native, command);
  for (const mode of ['cow', 'row'] as const) {
    const mine = names.filter((n) => strategyFor(pool, n).mode === mode);
    if (mine.length) await STRATEGIES[mode].destroy(pool, mine, command);
  }
}


/**
 * What destroying these snapshots would free (`destroy -n`): native ones
 * from their dead lists; a cow or row snapshot's store or layer less the
 * blocks its merge moves to the neighbour (those the neighbour lacks). The
 * neighbour's rewritten indirect blocks are not counted (a few KiB).
 */
export async function reclaimAll(pool: Pool, names: string[]): Promise<number> {
  const native = names.filter((n) => strategyFor(pool, n).mode === 'native');
  let n = native.length ? reclaimOf(pool, native) : 0;
  for (const full of names) {
    const { rec, snap, index } = findSnap(pool, full);
    const mode = modeOf(rec);
    if (mode === 'native') continue;
    const src = layerObject(pool, snap.id);
    const nb = mode === 'cow' ? rec.snapshots[index - 1] : rec.snapshots[index + 1];
    const dst = nb ? layerObject(pool, nb.id) : mode === 'row' ? headObject(pool, rec) : null;
    if (!dst) {
      n += snap.layerUsed ?? 0;
      continue;
    }
    await src.tree.walkAll(src.dnode, (bp) => void (bp.level > 0 && (n += bpAsize(bp))));
    const data: [number, number][] = [];
    await src.tree.walk(src.dnode, 0, src.dnode.nblocks, (b, bp) => void data.push([b, bpAsize(bp)]));
    const there = new Set<number>();
    if (data.length) await dst.tree.walk(dst.dnode, data[0]![0], data[data.length - 1]![0] + 1, (b) => void there.add(b));
    for (const [b, size] of data) if (there.has(b)) n += size;
  }
  return n;
}
