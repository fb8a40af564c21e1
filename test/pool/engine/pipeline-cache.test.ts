/**
 * The block cache never serves one block's contents for another block that
 * later occupies the same place: a reader still walking an old tree can
 * re-cache a block after it was freed, and the place is reused later.
 */
import { describe, expect, it } from 'vitest';
import { Arc, type ArcKey } from '../../../src/pool/cache/arc.js';
import { ObjType, type BlockPointer } from '../../../src/pool/blkptr.js';
import { Allocation } from '../../../src/pool/io/allocate.js';
import { computeChecksum } from '../../../src/pool/io/checksum.js';
import { arcKey, BlockPipeline } from '../../../src/pool/io/pipeline.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';

describe('block pipeline cache', () => {
  it('a stale re-cached block is not returned for the block that reuses its place', async () => {
    const leaf = new MemoryLeaf('aa', 'mem0', 80 * 1024 * 1024);
    const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
    const alloc = new Allocation([top]);
    const io = new BlockPipeline([top], alloc, new Arc<Buffer>({ maxBytes: 1 << 20 }));
    const props = { comp: 'off' as const, cksum: 'fletcher4' as const, type: ObjType.VolumeData, level: 0, fill: 1, birth: 5, copies: 1, logged: true };
    const a = Buffer.alloc(4096, 0xaa);
    const bp1 = (await io.write(a, props))!;
    expect((await io.read(bp1)).equals(a)).toBe(true);
    io.free(bp1, 6, true); // drops it from the cache
    await io.read(bp1); // a reader with the old tree finishes late: cached again
    alloc.synced(8); // the place is allocatable again...
    // ...and a new block of txg 9 lands exactly there.
    const b = Buffer.alloc(4096, 0xbb);
    await top.write(bp1.dvas[0]!.offset, b);
    const bp2: BlockPointer = { ...bp1, birth: 9, cksum: computeChecksum('fletcher4', b) };
    expect((await io.read(bp2)).equals(b)).toBe(true);
  });

  it('concurrent reads of one uncached block do one device read', async () => {
    const leaf = new MemoryLeaf('aa', 'mem0', 80 * 1024 * 1024);
    const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
    const alloc = new Allocation([top]);
    const io = new BlockPipeline([top], alloc, new Arc<Buffer>({ maxBytes: 1 << 20 }));
    const data = Buffer.alloc(16384, 0x11);
    const bp = (await io.write(data, { comp: 'off', cksum: 'sha256', type: ObjType.VolumeData, level: 0, fill: 1, birth: 3, copies: 1, logged: true }))!;
    const before = io.stats.readOps;
    const all = await Promise.all(Array.from({ length: 50 }, () => io.read(bp)));
    for (const r of all) expect(r.equals(data)).toBe(true);
    expect(io.stats.readOps - before).toBe(1);
  });

  it("owned reads (a read-modify-write's base) are the caller's alone: never cached, never shared with other readers", async () => {
    const leaf = new MemoryLeaf('aa', 'mem0', 80 * 1024 * 1024);
    const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
    const alloc = new Allocation([top]);
    const io = new BlockPipeline([top], alloc, new Arc<Buffer>({ maxBytes: 1 << 20 }));
    const props = (comp: 'off' | 'lz4') => ({ data: Buffer.alloc(0), p: { comp, cksum: 'fletcher4' as const, type: ObjType.VolumeData, level: 0, fill: 1, birth: 4, copies: 1, logged: true } });
    const random = (n: number, seed: number) => { const b = Buffer.alloc(n); let x = seed; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; } return b; };
    // Three adjacent blocks (one coalesced device read), one that compresses, one cached.
    const datas = [random(16384, 1), random(16384, 2), Buffer.alloc(16384, 7), random(16384, 3)];
    const bps = await io.writeMany(datas.map((d, i) => ({ ...props(i === 2 ? 'lz4' : 'off'), data: d })));
    expect(bps[2]!.comp).toBe('lz4');
    for (const bp of bps) io.arc.delete(arcKey(bp!));
    await io.read(bps[3]!); // cached now
    const before = io.stats.readOps;
    // A plain reader of block 0 in flight while the owned read of the same block runs.
    const plain = io.read(bps[0]!);
    const owned: boolean[] = [];
    const got = await io.readMany([bps[0]!, bps[1]!, bps[2]!, bps[3]!, null], undefined, owned);
    expect(owned.slice(0, 4)).toEqual([true, true, true, false]);
    got.forEach((g, i) => expect(g?.equals(datas[i]!) ?? i === 4, `block ${i}`).toBe(true));
    expect(io.stats.readOps - before).toBeGreaterThanOrEqual(4); // 3 owned (not joined to the plain read) + the plain one
    // The owner scribbles over its blocks: nobody else sees it.
    for (let i = 0; i < 3; i++) got[i]!.fill(0xee);
    expect((await plain).equals(datas[0]!)).toBe(true);
    for (let i = 0; i < 4; i++) expect((await io.read(bps[i]!)).equals(datas[i]!), `block ${i} read again`).toBe(true);
    for (let i = 1; i < 3; i++) expect(io.arc.get(arcKey(bps[i]!), bps[i]!.birth) === got[i]).toBe(false);
  });

  it('a spare data block cached by its write is taken by an owned read once its txg settles, unless a reader got it', async () => {
    class FailingLeaf extends MemoryLeaf {
      fail = false;
      protected override async doWrite(offset: number, data: Buffer[]): Promise<void> {
        if (this.fail) throw new Error('injected write error');
        return super.doWrite(offset, data);
      }
    }
    const leaf = new FailingLeaf('aa', 'mem0', 80 * 1024 * 1024, { faultAfter: 1000 });
    const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
    const alloc = new Allocation([top]);
    const io = new BlockPipeline([top], alloc, new Arc<Buffer>({ maxBytes: 4 << 20 }));
    const p = (birth: number, spare = true) => ({ comp: 'off' as const, cksum: 'fletcher4' as const, type: ObjType.VolumeData, level: 0, fill: 1, birth, copies: 1, logged: true, spare });
    const blocks = [0, 1, 2, 3, 4].map((i) => Buffer.alloc(16384, 0x10 + i));
    const notSpare = Buffer.alloc(16384, 0x77);
    const bps = await io.writeMany([...blocks.map((data) => ({ data, p: p(5) })), { data: notSpare, p: p(5, false) }]);
    const ownedRead = async (bp: BlockPointer) => {
      const owned: boolean[] = [];
      const [got] = await io.readMany([bp], undefined, owned);
      return { got: got!, owned: owned[0] };
    };
    // Before its txg settles: cached, but not spare (its write, dirty map and log records may still use it).
    let r = await ownedRead(bps[0]!);
    expect(r.owned).toBe(false);
    expect(r.got).toBe(blocks[0]);
    // A reader gets block 1 now (a send stream, a snapshot read): it may hold it for long.
    const held = await io.read(bps[1]!);
    io.settle(4); // not this txg yet
    expect((await ownedRead(bps[2]!)).owned).toBe(false);
    io.settle(5);
    // Block 0 was handed out by the owned read above (a shared hit), block 1 to the reader.
    expect((await ownedRead(bps[0]!)).owned).toBe(false);
    r = await ownedRead(bps[1]!);
    expect(r.owned).toBe(false);
    r.got.fill(0); // (what an owner that wrongly believed it owned would do)
    expect(held === r.got).toBe(true); // ...is why it must not: shown here on purpose
    held.set(blocks[1]!);
    // Block 3: spare, taken, out of the cache; the next plain read reads the device.
    r = await ownedRead(bps[3]!);
    expect(r.owned).toBe(true);
    expect(r.got).toBe(blocks[3]);
    expect(io.arc.has(arcKey(bps[3]!))).toBe(false);
    r.got.fill(0xee);
    const again = await io.read(bps[3]!);
    expect(again).not.toBe(blocks[3]);
    expect(again.equals(Buffer.alloc(16384, 0x13))).toBe(true);
    // Taken once only.
    expect((await ownedRead(bps[3]!)).owned).toBe(false);
    // Written without `spare` (a cow or row store's block, which may be a head's buffer too): never taken.
    expect((await ownedRead(bps[5]!)).owned).toBe(false);
    // A block placed by a write that failed is not left cached (nor spare).
    const failed = Buffer.alloc(16384, 0x99);
    let failedKey: ArcKey = '';
    const set = io.arc.set.bind(io.arc);
    io.arc.set = (key, value, bytes, tag) => {
      if (value === failed) failedKey = key;
      set(key, value, bytes, tag);
    };
    leaf.fail = true;
    await expect(io.writeMany([{ data: failed, p: p(6) }])).rejects.toThrow();
    leaf.fail = false;
    io.settle(6);
    expect(failedKey).not.toBe('');
    expect(io.arc.peek(failedKey)).toBeUndefined(); // its place was given back: forgotten
    expect(io.arc.take(failedKey, 6)).toBeUndefined();
    // Block 4, never read: still spare and taken.
    expect((await ownedRead(bps[4]!)).owned).toBe(true);
  });

  it('readMany with copyHit settles every run before it rejects: no copy lands after the caller gave up', async () => {
    const leaf = new MemoryLeaf('aa', 'mem0', 80 * 1024 * 1024);
    const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
    const io = new BlockPipeline([top], new Allocation([top]), new Arc<Buffer>({ maxBytes: 4 << 20 }));
    const p = { comp: 'off' as const, cksum: 'fletcher4' as const, type: ObjType.VolumeData, level: 0, fill: 1, birth: 3, copies: 1, logged: true };
    const datas = [1, 2, 3].map((i) => Buffer.alloc(16384, i));
    const bps = (await io.writeMany(datas.map((data) => ({ data, p }))))!;
    for (const bp of bps) io.arc.delete(arcKey(bp!));
    const [slow, , failing] = bps as BlockPointer[];
    const readUncached = io.readUncached.bind(io);
    io.readUncached = async (bp) => {
      if (bp === failing) throw new Error('injected read error');
      if (bp === slow) await new Promise((r) => setTimeout(r, 50));
      return readUncached(bp);
    };
    let done = false;
    let late = 0;
    const copies: number[] = [];
    // Blocks 0 and 2: two runs (not adjacent), the slow one still reading when the other fails.
    await expect(io.readMany([slow, failing], undefined, undefined, (i) => (done ? late++ : copies.push(i)))).rejects.toThrow('injected');
    done = true;
    await new Promise((r) => setTimeout(r, 100));
    expect(late).toBe(0);
    expect(copies).toEqual([0]);
  });
});
