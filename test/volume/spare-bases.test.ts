/**
 * A read-modify-write takes a block the ARC alone holds as its dirty block
 * (BlockPipeline.readMany's `owned`, Arc.take) instead of copying it, and
 * never takes one anybody else may hold: a reader that got it from the ARC
 * (a snapshot read, a send stream), whatever it does with it afterwards.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { arcKey } from '../../src/pool/io/pipeline.js';
import { MiB, newPool, readAll, rng, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const KiB = 1024;
const BS = 16 * KiB;

async function setup() {
  const { dir, cleanup } = await tempDir('strata-spare-');
  cleanups.push(cleanup);
  const { mgr, pool } = await newPool(dir, { size: 128 * MiB });
  await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true });
  const { volume } = await mgr.openVolume('tank/v');
  cleanups.unshift(() => mgr.close());
  const { obj } = pool.objectOf('tank/v');
  const cached = async (b: number) => pool.arc.peek(arcKey((await obj.committedBp(b))!));
  return { mgr, pool, volume, obj, cached };
}

describe('read-modify-write bases from the ARC', () => {
  it('a 4K write into a block its txg wrote and synced takes the cached block instead of copying it', async () => {
    const { pool, volume, obj, cached } = await setup();
    const r = rng(1);
    const data = r.bytes(BS);
    await volume.write(3 * BS, data);
    await pool.txg.syncNow();
    const base = await cached(3);
    expect(base?.equals(data)).toBe(true);
    const patch = r.bytes(4 * KiB);
    await volume.write(3 * BS + 4 * KiB, patch);
    expect(obj.dirtyBlock(3)).toBe(base); // the same buffer, now dirty
    patch.copy(data, 4 * KiB);
    expect((await volume.read(3 * BS, BS)).equals(data)).toBe(true);
    await pool.txg.syncNow();
    expect((await volume.read(3 * BS, BS)).equals(data)).toBe(true);
  });

  it("the volume's own reads copy a cached block without handing it out: a write after a read still takes it", async () => {
    const { pool, volume, obj, cached } = await setup();
    const r = rng(4);
    const data = r.bytes(BS);
    await volume.write(6 * BS, data);
    await pool.txg.syncNow();
    const base = await cached(6);
    const hits = pool.arc.stats().hits;
    expect((await volume.read(6 * BS, BS)).equals(data)).toBe(true);
    expect((await volume.read(6 * BS + 100, 5000)).equals(data.subarray(100, 5100))).toBe(true);
    expect(pool.arc.stats().hits - hits).toBeGreaterThanOrEqual(2); // served from the ARC
    await volume.write(6 * BS, Buffer.alloc(4 * KiB, 0x5a));
    expect(obj.dirtyBlock(6)).toBe(base);
    Buffer.alloc(4 * KiB, 0x5a).copy(data);
    expect((await volume.read(6 * BS, BS)).equals(data)).toBe(true);
  });

  it('a block the volume alone read from the device is spare; one another reader shared the read of is not', async () => {
    const { pool, volume, obj, cached } = await setup();
    const r = rng(5);
    const a = r.bytes(BS);
    const b = r.bytes(BS);
    await volume.write(7 * BS, a);
    await volume.write(9 * BS, b);
    await pool.txg.syncNow();
    const bpA = (await obj.committedBp(7))!;
    const bpB = (await obj.committedBp(9))!;
    pool.arc.delete(arcKey(bpA));
    pool.arc.delete(arcKey(bpB));
    // Block 7: read by the volume alone.
    expect((await volume.read(7 * BS, BS)).equals(a)).toBe(true);
    const cachedA = await cached(7);
    expect(cachedA?.equals(a)).toBe(true);
    // Block 9: the volume's device read is joined by another reader, who keeps the buffer.
    const readUncached = pool.io.readUncached.bind(pool.io);
    let joiner: Promise<Buffer> | undefined;
    pool.io.readUncached = (bp) => {
      const p = readUncached(bp);
      if (bp.birth === bpB.birth && bp.dvas[0]!.offset === bpB.dvas[0]!.offset) queueMicrotask(() => (joiner = pool.io.read(bpB)));
      return p;
    };
    expect((await volume.read(9 * BS, BS)).equals(b)).toBe(true);
    pool.io.readUncached = readUncached;
    const held = await joiner!;
    expect(held).toBe(await cached(9));
    await volume.write(7 * BS + 4 * KiB, Buffer.alloc(4 * KiB, 1));
    await volume.write(9 * BS + 4 * KiB, Buffer.alloc(4 * KiB, 1));
    expect(obj.dirtyBlock(7)).toBe(cachedA); // taken
    expect(obj.dirtyBlock(9)).not.toBe(held); // copied
    expect(held.equals(b)).toBe(true);
    Buffer.alloc(4 * KiB, 1).copy(a, 4 * KiB);
    Buffer.alloc(4 * KiB, 1).copy(b, 4 * KiB);
    expect((await volume.read(7 * BS, BS)).equals(a)).toBe(true);
    expect((await volume.read(9 * BS, BS)).equals(b)).toBe(true);
  });

  it('a block a reader got from the ARC is copied, never taken: a snapshot reader holding it sees the snapshot', async () => {
    const { mgr, pool, volume, obj, cached } = await setup();
    const r = rng(2);
    const old = r.bytes(BS);
    await volume.write(5 * BS, old);
    await pool.txg.syncNow();
    await mgr.snapshot(['tank/v@s']);
    // A long-lived reader of the snapshot's block (it shares the head's block pointer).
    const bp = (await obj.committedBp(5))!;
    const held = await pool.io.read(bp);
    expect(held).toBe(await cached(5));
    const patch = r.bytes(4 * KiB);
    await volume.write(5 * BS + 8 * KiB, patch);
    expect(obj.dirtyBlock(5)).not.toBe(held);
    expect(held.equals(old)).toBe(true);
    await pool.txg.syncNow();
    expect(held.equals(old)).toBe(true);
    const snap = await mgr.openSnapshot('tank/v@s');
    expect((await snap.device.read(5 * BS, BS)).equals(old)).toBe(true);
    await snap.release();
    const now = Buffer.from(old);
    patch.copy(now, 8 * KiB);
    expect((await volume.read(5 * BS, BS)).equals(now)).toBe(true);
  });

  it('a cow or row volume never takes one (its store may share the head block)', async () => {
    const { mgr, pool } = await setup();
    for (const mode of ['cow', 'row']) {
      await mgr.create(`tank/${mode}`, { volsize: '1M', blocksize: '16K', sparse: true, props: { snapmode: mode } });
      const { volume } = await mgr.openVolume(`tank/${mode}`);
      const { obj } = pool.objectOf(`tank/${mode}`);
      await volume.write(2 * BS, Buffer.alloc(BS, 0x42));
      await pool.txg.syncNow();
      const base = pool.arc.peek(arcKey((await obj.committedBp(2))!));
      expect(base).toBeDefined();
      await volume.write(2 * BS, Buffer.alloc(512, 0x43));
      expect(obj.dirtyBlock(2), mode).not.toBe(base);
      expect(base!.equals(Buffer.alloc(BS, 0x42)), mode).toBe(true);
    }
  });

  it('random partial writes, reads, snapshots and syncs agree with a model', async () => {
    const { mgr, pool, volume } = await setup();
    const size = 4 * MiB;
    const model = Buffer.alloc(size);
    const snaps: { name: string; data: Buffer }[] = [];
    const r = rng(3);
    for (let round = 0; round < 60; round++) {
      // Disjoint blocks per round, so concurrent operations have one right answer.
      const blocks = new Set<number>();
      while (blocks.size < 8) blocks.add(r.below(size / BS));
      const ops: Promise<unknown>[] = [];
      for (const b of blocks) {
        const kind = r.below(4);
        if (kind === 0) {
          ops.push(volume.read(b * BS, BS).then((got) => expect(got.equals(model.subarray(b * BS, (b + 1) * BS)), `block ${b}`).toBe(true)));
        } else {
          const at = b * BS + r.below(4) * 4 * KiB;
          const d = r.bytes(4 * KiB * (1 + r.below(3)));
          const len = Math.min(d.length, (b + 1) * BS - at);
          d.subarray(0, len).copy(model, at);
          ops.push(volume.write(at, d.subarray(0, len)));
        }
      }
      if (r.below(3) === 0) ops.push(pool.txg.syncNow());
      await Promise.all(ops);
      if (round % 15 === 14) {
        const name = `tank/v@r${round}`;
        await mgr.snapshot([name]);
        snaps.push({ name, data: Buffer.from(model) });
      }
    }
    await pool.txg.syncNow();
    expect((await readAll(volume)).equals(model)).toBe(true);
    for (const s of snaps) {
      const { device, release } = await mgr.openSnapshot(s.name);
      expect((await readAll(device)).equals(s.data), s.name).toBe(true);
      await release();
    }
  });
});
