/**
 * A native snapshot of a volume as a read-only BlockDevice: reads and block
 * status straight from the snapshot's block tree (it never changes), through
 * the snapshot view every strategy uses (src/snapshot/view.ts).
 */
import { err } from '../errors.js';
import type { Pool } from '../pool/pool.js';
import { dnodeFromJson } from '../pool/object/dnode.js';
import { BlockTree } from '../pool/object/tree.js';
import { findSnap } from '../pool/dataset/snapshots.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';
import { LayeredView, type ViewSource } from '../snapshot/view.js';

export class SnapshotDevice extends LayeredView {
  constructor(pool: Pool, full: string) {
    const { snap, rec } = findSnap(pool, full);
    if (!snap.object) throw err.inval(`'${full}' is not a volume snapshot`);
    const dnode = dnodeFromJson(snap.object);
    const tree = new BlockTree(pool.io);
    const source: ViewSource = {
      read: async (ids) => pool.io.readMany(await Promise.all(ids.map((b) => tree.getBp(dnode, b)))),
      allocated: async (first, end) => {
        const out: number[] = [];
        await tree.walk(dnode, first, end, (b) => void out.push(b));
        return out;
      },
    };
    // The snapshot itself, not its name: a rename or a promote must not break an open export.
    let owner = rec;
    super({
      pool,
      size: dnode.nblocks * dnode.blockSize,
      bs: dnode.blockSize,
      source: async () => source,
      check: () => {
        owner = ownerOf(pool, owner, snap, full);
      },
    });
  }
}

/** The dataset holding `snap` now (moved by a promote?); ENOENT once it is gone (its blocks may be freed). */
function ownerOf(pool: Pool, last: DatasetRecord, snap: SnapshotRecord, full: string): DatasetRecord {
  if (last.snapshots.includes(snap)) return last;
  for (const rec of pool.dir.datasets.values()) if (rec.snapshots.includes(snap)) return rec;
  throw err.noent(`snapshot '${full}' was destroyed`);
}
