/**
 * Block trees: lookup, extent walks and copy-on-write sync of one object.
 *
 * Ordering rule: sync() writes children before parents (data, then level 1,
 * then upwards) and returns the new root; the caller publishes that root
 * (in the directory, then the MOS root, then the uberblock) only after the
 * whole txg's writes are issued, and the uberblock only after a device flush.
 * Old blocks are handed to `kill` (free or dead list), never overwritten.
 *
 * Buffers read from the pipeline are shared with the ARC: never mutated here;
 * an indirect block being updated is copied first.
 */
import { bpBirthAt, decodeBp, encodeBp, isHole, ObjType, type BlockPointer } from '../blkptr.js';
import { arcKey, arcKeyAt, type BlockPipeline, type WriteProps } from '../io/pipeline.js';
import type { ArcKey } from '../cache/arc.js';
import { IND_FANOUT, IND_SHIFT, IND_SIZE, levelsFor, type Dnode } from './dnode.js';

export interface SyncHooks {
  /** Write properties for blocks of this object at the given level. */
  props(level: number): WriteProps;
  /** A block that the new tree no longer references (free it or move it to a dead list). */
  kill(bp: BlockPointer): void;
  /** A block newly referenced by the tree. */
  born(bp: BlockPointer): void;
}

/** Dirty level-0 contents: a Buffer of blockSize bytes, or null for "make it a hole". */
export type DirtyMap = Map<number, Buffer | null>;

const spanAt = (level: number) => Math.pow(IND_FANOUT, level);

/** The pointer, in indirect block `ind` `up` levels above them, to the subtree holding entry `index` of its level. */
const childOf = (ind: Buffer, index: number, up: number): BlockPointer | null => decodeBp(ind, slotAt(index, up));

/** Byte offset, in indirect block `ind` `up` levels above them, of that pointer. */
const slotAt = (index: number, up: number): number => (Math.floor(index / spanAt(up - 1)) % IND_FANOUT) * 128;

/**
 * Level-0 blocks the tree cannot hold: past the object's end, or past what its height
 * addresses. A grown object keeps its old height until its next sync writes a taller
 * tree; blocks past that span were never written (holes), and without this check the
 * slot index wraps (% IND_FANOUT) onto another block.
 */
const unaddressed = (d: Dnode, blkid: number): boolean => blkid >= d.nblocks || blkid >= spanAt(d.levels);

export class BlockTree {
  constructor(private io: BlockPipeline) {}

  /**
   * getBp without awaiting: the block pointer, or null for a hole, when every indirect
   * block on the way is in the ARC; undefined when one is not (then call getBp). The
   * write path's common case (a small write into a cached volume) then costs no promise
   * per level.
   */
  getBpCached(d: Dnode, blkid: number): BlockPointer | null | undefined {
    if (unaddressed(d, blkid) || isHole(d.root)) return null;
    // The levels in between are passed through in place (ARC key and birth read from the
    // indirect block's bytes): decoding a pointer per level made objects the write path
    // dropped at once (a 4K write to a pool volume looks up the block it modifies).
    const root = d.root!;
    if (d.levels < 1) return root; // (no tree above the one block)
    let ind = this.io.peek(root);
    if (!ind) return undefined;
    let keys: ArcKey[] | undefined;
    let births: number[] | undefined;
    let found: BlockPointer | null = null;
    for (let l = d.levels; ; l--) {
      const at = slotAt(blkid, l);
      if (l === 1) {
        found = decodeBp(ind, at);
        break;
      }
      const birth = bpBirthAt(ind, at);
      if (birth === 0) break; // a hole above level 1: the block is a hole
      const key = arcKeyAt(ind, at);
      const next = key === undefined ? undefined : this.io.peekKey(key, birth);
      if (!next) return undefined;
      (keys ??= []).push(key!);
      (births ??= []).push(birth);
      ind = next;
    }
    this.io.touch(root);
    if (keys) for (let i = 0; i < keys.length; i++) this.io.touchKey(keys[i]!, births![i]!);
    return found;
  }

  /**
   * getBp of each of `blkids`: the array itself when every indirect block on the way is
   * cached (getBpCached), else a promise of it. Callers test before awaiting.
   */
  getBps(d: Dnode, blkids: readonly number[]): (BlockPointer | null)[] | Promise<(BlockPointer | null)[]> {
    const found = blkids.map((b) => this.getBpCached(d, b));
    if (!found.includes(undefined)) return found as (BlockPointer | null)[];
    return Promise.all(blkids.map((b, k) => (found[k] !== undefined ? (found[k] as BlockPointer | null) : this.getBp(d, b))));
  }

  /** Block pointer of level-0 block `blkid`, or null for a hole. */
  async getBp(d: Dnode, blkid: number): Promise<BlockPointer | null> {
    if (unaddressed(d, blkid)) return null;
    let bp = d.root;
    for (let l = d.levels; l >= 1; l--) {
      if (isHole(bp)) return null;
      bp = childOf(await this.io.read(bp!), blkid, l);
    }
    return isHole(bp) ? null : bp;
  }

  /** Logical contents of block `blkid` or null when it is a hole. Shared buffer: do not mutate. */
  async readBlock(d: Dnode, blkid: number): Promise<Buffer | null> {
    const bp = await this.getBp(d, blkid);
    return bp ? this.io.read(bp) : null;
  }

  /**
   * Visit the allocated level-0 blocks in [start, end) in order, skipping
   * holes at any level without reading below them.
   */
  async walk(d: Dnode, start: number, end: number, visit: (blkid: number, bp: BlockPointer) => void | Promise<void>): Promise<void> {
    // Past the span of the current height there is nothing (see getBp).
    end = Math.min(end, d.nblocks, spanAt(d.levels));
    if (start >= end || isHole(d.root)) return;
    const rec = async (bp: BlockPointer, level: number, base: number): Promise<void> => {
      if (level === 0) {
        await visit(base, bp);
        return;
      }
      const ind = await this.io.read(bp);
      const span = spanAt(level - 1);
      const first = Math.max(0, Math.floor((start - base) / span));
      const last = Math.min(IND_FANOUT - 1, Math.floor((end - 1 - base) / span));
      for (let i = first; i <= last; i++) {
        const child = decodeBp(ind, i * 128);
        if (!isHole(child)) await rec(child!, level - 1, base + i * span);
      }
    };
    await rec(d.root!, d.levels, 0);
  }

  /** Every block of the tree (all levels), for space claims on import and for scrub. */
  async walkAll(d: Dnode, visit: (bp: BlockPointer) => void | Promise<void>): Promise<void> {
    if (isHole(d.root)) return;
    const rec = async (bp: BlockPointer, level: number): Promise<void> => {
      await visit(bp);
      if (level === 0) return;
      const ind = await this.io.read(bp);
      for (let i = 0; i < IND_FANOUT; i++) {
        const child = decodeBp(ind, i * 128);
        if (!isHole(child)) await rec(child!, level - 1);
      }
    };
    await rec(d.root!, d.levels);
  }

  /**
   * Every block (all levels) born after txg `after`, skipping whole subtrees
   * born at or before it: in a copy-on-write tree a parent is never older
   * than its children, so such a subtree is unchanged since `after`.
   * Used to free what a rollback or a clone's destroy uniquely owns.
   */
  async walkBorn(d: Dnode, after: number, visit: (bp: BlockPointer) => void | Promise<void>): Promise<void> {
    if (isHole(d.root) || d.root!.birth <= after) return;
    const rec = async (bp: BlockPointer, level: number): Promise<void> => {
      if (level > 0) {
        const ind = await this.io.read(bp);
        for (let i = 0; i < IND_FANOUT; i++) {
          const child = decodeBp(ind, i * 128);
          if (!isHole(child) && child!.birth > after) await rec(child!, level - 1);
        }
      }
      await visit(bp);
    };
    await rec(d.root!, d.levels);
  }

  /**
   * Copy-on-write sync: write the dirty blocks and every indirect block
   * above them, return the new dnode. Blocks at or beyond `d.nblocks` in
   * `dirty` are ignored (a shrink makes them holes through the dirty map).
   *
   * `placed`: level-0 block pointers to put in as they are, without writing
   * data (a block moving from one tree to another: src/snapshot's merges).
   * The caller guarantees the block stays allocated (the tree it came from
   * does not free it); they are reported to `born` like written ones.
   */
  async sync(d: Dnode, dirty: DirtyMap, hooks: SyncHooks, placed?: Map<number, BlockPointer>): Promise<Dnode> {
    let root = d.root;
    let levels = d.levels;
    // Grow the tree first if the object grew past what its height can address.
    const need = levelsFor(d.nblocks);
    while (levels < need) {
      if (!isHole(root)) {
        const ind = Buffer.alloc(IND_SIZE);
        encodeBp(root, ind, 0);
        const p = hooks.props(levels + 1);
        const nbp = await this.io.write(ind, { ...p, level: levels + 1, type: ObjType.Indirect, fill: root!.fill });
        if (nbp) hooks.born(nbp);
        root = nbp;
      }
      levels++;
    }
    const tree: Dnode = { ...d, root, levels };
    if (dirty.size === 0 && !placed?.size) return tree;

    const ids = [...dirty.keys()].filter((b) => b < d.nblocks).sort((a, b) => a - b);
    // Level 0: write data blocks in blkid order so allocation lays them out sequentially.
    const items: { id: number; data: Buffer }[] = [];
    for (const id of ids) {
      const data = dirty.get(id);
      if (data) items.push({ id, data });
    }
    const p0 = { ...hooks.props(0), level: 0, fill: 1 }; // one shared (read-only) props object, not one per block
    const written = await this.io.writeMany(items.map((it) => ({ data: it.data, p: p0 })));
    let updates = new Map<number, BlockPointer | null>();
    for (const id of ids) updates.set(id, null);
    items.forEach((it, i) => updates.set(it.id, written[i]!));
    if (placed) for (const [id, bp] of placed) if (id < d.nblocks && !dirty.has(id)) updates.set(id, bp);

    for (let level = 1; level <= levels; level++) {
      // Group child updates by parent.
      const parents = new Map<number, [number, BlockPointer | null][]>();
      for (const [id, bp] of updates) {
        const pid = Math.floor(id / IND_FANOUT);
        let g = parents.get(pid);
        if (!g) parents.set(pid, (g = []));
        g.push([id, bp]);
      }
      const next = new Map<number, BlockPointer | null>();
      const pids = [...parents.keys()].sort((a, b) => a - b);
      const toWrite: { pid: number; buf: Buffer; fill: number }[] = [];
      for (const pid of pids) {
        const oldBp = level === levels ? tree.root : await this.bpAt(tree, level, pid);
        const buf = isHole(oldBp) ? Buffer.alloc(IND_SIZE) : Buffer.from(await this.io.read(oldBp!));
        for (const [id, bp] of parents.get(pid)!) {
          const slot = (id % IND_FANOUT) * 128;
          const old = decodeBp(buf, slot);
          if (old) hooks.kill(old);
          encodeBp(bp, buf, slot);
          if (bp) hooks.born(bp);
        }
        // Below the top, the old parent is killed when the grandparent's slot is overwritten.
        if (oldBp && level === levels) hooks.kill(oldBp);
        let fill = 0;
        for (let i = 0; i < IND_FANOUT; i++) {
          const o = i * 128 + 64;
          if (buf.readUInt32LE(o) !== 0 || buf.readUInt32LE(o + 4) !== 0) fill += buf.readUInt32LE(i * 128 + 60);
        }
        if (fill === 0) next.set(pid, null);
        else toWrite.push({ pid, buf, fill });
      }
      const p = hooks.props(level);
      const bps = await this.io.writeMany(
        toWrite.map((w) => ({ data: w.buf, p: { ...p, level, type: ObjType.Indirect, fill: w.fill, noHole: true } })),
      );
      toWrite.forEach((w, i) => {
        const bp = bps[i]!;
        this.io.arc.set(arcKey(bp), w.buf, w.buf.length, bp.birth);
        next.set(w.pid, bp);
      });
      updates = next;
    }
    // At the top there is exactly one "parent" (index 0): the new root.
    const newRoot = updates.get(0) ?? null;
    if (newRoot) hooks.born(newRoot);
    return { ...tree, root: newRoot };
  }

  /** Block pointer of the block at (level, index) in the committed tree. */
  private async bpAt(d: Dnode, level: number, index: number): Promise<BlockPointer | null> {
    let bp = d.root;
    for (let l = d.levels; l > level; l--) {
      if (isHole(bp)) return null;
      bp = childOf(await this.io.read(bp!), index, l - level);
    }
    return isHole(bp) ? null : bp;
  }
}

export { IND_SHIFT };
