/**
 * BlockTree against a Map model: copy-on-write sync, lookups, walks, and
 * the born/kill accounting that frees old blocks (no leak, no double free).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Arc } from '../../../src/pool/cache/arc.js';
import { bpAsize, ObjType, type BlockPointer } from '../../../src/pool/blkptr.js';
import { Allocation } from '../../../src/pool/io/allocate.js';
import { BlockPipeline } from '../../../src/pool/io/pipeline.js';
import { newDnode, levelsFor, type Dnode } from '../../../src/pool/object/dnode.js';
import { BlockTree, type DirtyMap, type SyncHooks } from '../../../src/pool/object/tree.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';

const BS = 4096;

function setup() {
  const leaf = new MemoryLeaf('aa', 'mem0', 96 * 1024 * 1024);
  const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
  const alloc = new Allocation([top]);
  const io = new BlockPipeline([top], alloc, new Arc<Buffer>({ maxBytes: 4 * 1024 * 1024 }));
  return { leaf, alloc, io, tree: new BlockTree(io) };
}

/** Distinct, non-zero block contents keyed by a small integer. */
function content(v: number): Buffer {
  const b = Buffer.alloc(BS);
  b.writeUInt32LE(v + 1, 0);
  b.writeUInt32LE(0xabcdef, BS - 4);
  return b;
}

function hooksFor(io: BlockPipeline, txg: number, live: Map<string, BlockPointer>): SyncHooks {
  const key = (bp: BlockPointer) => `${bp.dvas[0]!.vdev}:${bp.dvas[0]!.offset}`;
  return {
    props: (level) => ({ comp: 'lz4', cksum: 'fletcher4', type: level ? ObjType.Indirect : ObjType.VolumeData, level, fill: 1, birth: txg, copies: 1, logged: true }),
    born: (bp) => {
      if (live.has(key(bp))) throw new Error(`born twice: ${key(bp)}`);
      live.set(key(bp), bp);
    },
    kill: (bp) => {
      if (!live.delete(key(bp))) throw new Error(`killed a block that is not live: ${key(bp)}`);
      io.free(bp, txg, true);
    },
  };
}

describe('BlockTree', () => {
  it('sync/getBp/readBlock/walk/walkAll agree with a Map model; freed space returns', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2600 }),
        fc.array(fc.array(fc.tuple(fc.nat(2599), fc.option(fc.nat(1000), { freq: 3 })), { maxLength: 60 }), { minLength: 1, maxLength: 6 }),
        fc.tuple(fc.nat(2599), fc.nat(2599)),
        async (nblocks, batches, [wa, wb]) => {
          const { alloc, io, tree } = setup();
          let d: Dnode = newDnode(BS, nblocks);
          const model = new Map<number, number>();
          const live = new Map<string, BlockPointer>();
          let txg = 1;
          for (const batch of batches) {
            const dirty: DirtyMap = new Map();
            for (const [b, v] of batch) {
              if (b >= nblocks) continue;
              dirty.set(b, v === null ? null : content(v));
              if (v === null) model.delete(b);
              else model.set(b, v);
            }
            d = { ...(await tree.sync(d, dirty, hooksFor(io, txg, live))), nblocks };
            alloc.synced(txg + 2); // release the deferred frees of this txg
            txg++;
          }
          expect(d.levels).toBe(levelsFor(nblocks));
          for (let b = 0; b < nblocks; b++) {
            const bp = await tree.getBp(d, b);
            const data = await tree.readBlock(d, b);
            if (model.has(b)) {
              expect(bp, `block ${b}`).not.toBeNull();
              expect(data!.equals(content(model.get(b)!)), `block ${b}`).toBe(true);
            } else {
              expect(bp, `block ${b} should be a hole`).toBeNull();
              expect(data).toBeNull();
            }
          }
          // walk visits exactly the allocated blocks in [a, b), in order
          const [s, e] = wa <= wb ? [wa, wb] : [wb, wa];
          const seen: number[] = [];
          await tree.walk(d, s, e, (b) => void seen.push(b));
          expect(seen).toEqual([...model.keys()].filter((b) => b >= s && b < e).sort((x, y) => x - y));
          // walkAll reaches exactly the live set (born minus killed), and that is all that is allocated
          const reached = new Map<string, BlockPointer>();
          await tree.walkAll(d, (bp) => void reached.set(`${bp.dvas[0]!.vdev}:${bp.dvas[0]!.offset}`, bp));
          expect([...reached.keys()].sort()).toEqual([...live.keys()].sort());
          let bytes = 0;
          for (const bp of reached.values()) bytes += bpAsize(bp);
          expect(alloc.allocated() - alloc.pendingFrees()).toBe(bytes);
          if (model.size === 0) expect(d.root).toBeNull();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('getBps answers at once through cached indirect blocks, else as getBp does, with the same ARC counts', async () => {
    const { io, tree } = setup();
    const live = new Map<string, BlockPointer>();
    const nblocks = 3000; // two levels: a root over three level-1 blocks
    const dirty: DirtyMap = new Map([[0, content(1)], [1500, content(2)], [2999, content(3)]]);
    const d = { ...(await tree.sync(newDnode(BS, nblocks), dirty, hooksFor(io, 1, live))), nblocks };
    expect(d.levels).toBe(2);
    const ids = [0, 1, 1500, 2999, 2000, 5000];
    const want = await Promise.all(ids.map((b) => tree.getBp(d, b)));
    expect(want.map((bp) => bp !== null)).toEqual([true, false, true, true, false, false]);
    // The sync cached what it wrote: no await needed.
    const now = tree.getBps(d, ids);
    expect(Array.isArray(now)).toBe(true);
    expect(now).toEqual(want);
    // Nothing cached: a promise, and each indirect block counted once, as getBp alone counts it.
    const counts = () => {
      const st = io.arc.stats();
      return { hits: st.hits, misses: st.misses };
    };
    const delta = async (f: () => Promise<unknown>) => {
      io.arc.clear();
      const a = counts();
      await f();
      const b = counts();
      return { hits: b.hits - a.hits, misses: b.misses - a.misses };
    };
    const viaGetBp = await delta(() => Promise.all(ids.map((b) => tree.getBp(d, b))));
    let later: ReturnType<BlockTree['getBps']> = [];
    const viaGetBps = await delta(async () => {
      later = tree.getBps(d, ids);
      expect(Array.isArray(later)).toBe(false);
      expect(await later).toEqual(want);
    });
    expect(viaGetBps).toEqual(viaGetBp);
    expect(viaGetBp.misses).toBeGreaterThan(0);
    // Cached again by those reads: at once, and every lookup a hit.
    const again = await delta(async () => {
      await Promise.all(ids.map((b) => tree.getBp(d, b)));
      const before = counts();
      expect(Array.isArray(tree.getBps(d, ids))).toBe(true);
      expect(counts().misses).toBe(before.misses);
    });
    expect(again.misses).toBe(viaGetBp.misses);
  });

  it('a grown object reads holes past its old span before the tree grows (no aliasing)', async () => {
    const { io, tree } = setup();
    const live = new Map<string, BlockPointer>();
    let d = newDnode(BS, 1024); // one level addresses exactly 1024 blocks
    d = await tree.sync(d, new Map([[0, content(7)]]), hooksFor(io, 1, live));
    const grown = { ...d, nblocks: 4096 }; // as a volsize grow leaves it until the next sync
    expect(await tree.getBp(grown, 1024)).toBeNull();
    expect(await tree.readBlock(grown, 2048)).toBeNull();
    const seen: number[] = [];
    await tree.walk(grown, 0, 4096, (b) => void seen.push(b));
    expect(seen).toEqual([0]);
    // the next sync grows the tree; old and new blocks are both there
    const d2 = await tree.sync(grown, new Map([[3000, content(9)]]), hooksFor(io, 2, live));
    expect(d2.levels).toBe(2);
    expect((await tree.readBlock(d2, 0))!.equals(content(7))).toBe(true);
    expect((await tree.readBlock(d2, 3000))!.equals(content(9))).toBe(true);
    expect(await tree.readBlock(d2, 1024)).toBeNull();
  });
});
