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
import { IND_FANOUT, type Dnode } from './dnode.js';
import { BlockTree, type DirtyMap } from './tree.js';

/**
 * What each txg's sync will write besides its data blocks, counted as
 * blocks are first dirtied in it, for the whole pool: indirect blocks
 * (times their copies) and bytes of MOS records (space map log entries for
 * the block's allocation and free, dead-list entries). The admission check
 * holds contiguous space for that much (pool.ts metaNeed, allocate.ts
 * holdMeta). Counting on the dirty map itself means every writer (volume
 * writes, zeroing, cow copies, shrinks) is counted, not only the ones that
 * pass admission.
 */
export class MetaTally {
  private readonly byTxg = new Map<number, { blocks: number; mosBytes: number }>();

  add(txg: number, blocks: number, mosBytes: number): void {
    const e = this.byTxg.get(txg);
    if (e) {
      e.blocks += blocks;
      e.mosBytes += mosBytes;
    } else this.byTxg.set(txg, { blocks, mosBytes });
  }

  has(txg: number): boolean {
    return this.byTxg.has(txg);
  }

  /** Every unsynced txg's counts. */
  entries(): IterableIterator<{ blocks: number; mosBytes: number }> {
    return this.byTxg.values();
  }

  /** Txg `txg` has synced: its blocks are written (or failed with it). */
  drop(txg: number): void {
    this.byTxg.delete(txg);
  }
}

/**
 * A txg's dirty map that tells its object about each block it gains, so the
 * object can count the indirect blocks the sync will rewrite (MetaTally).
 */
class CountedDirtyMap extends Map<number, Buffer | null> {
  constructor(
    private readonly owner: ObjectState,
    private readonly txg: number,
  ) {
    super();
  }

  override set(blkid: number, data: Buffer | null): this {
    if (!this.has(blkid)) this.owner.noteDirtied(this.txg, blkid);
    return super.set(blkid, data);
  }
}

export class ObjectState {
  /** txg -> dirty level-0 blocks of that txg (null = becomes a hole). */
  readonly dirty = new Map<number, DirtyMap>();
  readonly tree: BlockTree;
  /** Where this object's indirect-block counts go; set by the pool's object map. */
  tally: MetaTally | null = null;
  /** Copies of this object's indirect blocks (its dataset's copies + 1, at most 3); volumes refresh it on write. */
  metaCopies = 2;
  /**
   * MOS bytes a dirtied block costs its sync: two space map log records
   * (16 bytes each, its allocation and its old block's free, with slack),
   * plus a dead-list entry (128) when the dataset has snapshots; volumes
   * refresh it on write.
   */
  mosBytesPerBlock = 48;
  /** txg -> indirect blocks (level * 2^40 + index) already counted for that txg. */
  private readonly counted = new Map<number, Set<number>>();

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
    if (!m) this.dirty.set(txg, (m = new CountedDirtyMap(this, txg)));
    return m;
  }

  /**
   * Block `blkid` joined txg `txg`'s dirty map: count the indirect blocks
   * above it that the sync will rewrite, unless a block sharing them was
   * counted already (then so were their parents), and its MOS bytes.
   */
  noteDirtied(txg: number, blkid: number): void {
    let seen = this.counted.get(txg);
    if (!seen) this.counted.set(txg, (seen = new Set()));
    const n = this.addIndirects(blkid, undefined, seen);
    this.tally?.add(txg, n * this.metaCopies, this.mosBytesPerBlock);
  }

  /**
   * Indirect blocks (times their copies) that dirtying `blkids` in txg `txg`
   * would add to the count, without counting them: what a write must hold
   * room for before it dirties anything.
   */
  uncounted(txg: number, blkids: readonly number[]): number {
    const seen = this.counted.get(txg);
    const mine = new Set<number>();
    for (const blkid of blkids) this.addIndirects(blkid, seen, mine);
    return mine.size * this.metaCopies;
  }

  /**
   * Add to `into` the indirect blocks above `blkid` (as level * 2^40 +
   * index) that neither `seen` nor `into` has, lowest level first, stopping
   * at the first one present: its parents are present too. Returns how
   * many were added.
   */
  private addIndirects(blkid: number, seen: Set<number> | undefined, into: Set<number>): number {
    let n = 0;
    const levels = Math.max(1, this.dnode.levels);
    for (let l = 1, span = IND_FANOUT; l <= levels; l++, span *= IND_FANOUT) {
      const key = l * 2 ** 40 + Math.floor(blkid / span);
      if (seen?.has(key) || into.has(key)) break;
      into.add(key);
      n++;
    }
    return n;
  }

  /** Discard every txg's dirty blocks and their counts (rollbacks, row snapshots, dropped layers). */
  clearDirty(): void {
    this.dirty.clear();
    this.counted.clear();
  }

  /** Txg `txg` is synced (or its data discarded): forget its dirty map and counts. */
  dropTxg(txg: number): void {
    this.dirty.delete(txg);
    this.counted.delete(txg);
  }

  hasDirty(): boolean {
    for (const m of this.dirty.values()) if (m.size) return true;
    return false;
  }
}
