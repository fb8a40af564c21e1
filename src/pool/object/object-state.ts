/**
 * In-memory state of one data object (a volume's blocks): the committed
 * dnode plus the dirty blocks of each txg not yet synced.
 *
 * Reads see the newest version of a block: the open txg's dirty copy, else
 * the syncing txg's, else the committed tree. A sync publishes its new
 * dnode and drops its dirty map in the same tick, so no reader can see a
 * gap between the two.
 */
import type { BlockPointer } from '../blkptr.js';
import type { BlockPipeline } from '../io/pipeline.js';
import type { Dnode } from './dnode.js';
import { BlockTree, type DirtyMap } from './tree.js';

export class ObjectState {
  /** txg -> dirty level-0 blocks of that txg (null = becomes a hole). */
  readonly dirty = new Map<number, DirtyMap>();
  readonly tree: BlockTree;

  constructor(
    public dnode: Dnode,
    io: BlockPipeline,
  ) {
    this.tree = new BlockTree(io);
  }

  get blockSize(): number {
    return this.dnode.blockSize;
  }

  /** Newest dirty version of a block: Buffer, null (hole), or undefined (not dirty). */
  dirtyBlock(blkid: number): Buffer | null | undefined {
    let best: Buffer | null | undefined;
    let bestTxg = -1;
    for (const [txg, m] of this.dirty) {
      if (txg > bestTxg && m.has(blkid)) {
        best = m.get(blkid)!;
        bestTxg = txg;
      }
    }
    return best;
  }

  /** Contents of a block (shared; do not mutate) or null for a hole. */
  async read(blkid: number): Promise<Buffer | null> {
    const d = this.dirtyBlock(blkid);
    if (d !== undefined) return d;
    return this.tree.readBlock(this.dnode, blkid);
  }

  /** Committed block pointer (ignores dirty data). */
  committedBp(blkid: number): Promise<BlockPointer | null> {
    return this.tree.getBp(this.dnode, blkid);
  }

  mapFor(txg: number): DirtyMap {
    let m = this.dirty.get(txg);
    if (!m) this.dirty.set(txg, (m = new Map()));
    return m;
  }

  hasDirty(): boolean {
    for (const m of this.dirty.values()) if (m.size) return true;
    return false;
  }
}
