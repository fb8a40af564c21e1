/**
 * Volume behaviour around txg boundaries: resize (grow/shrink) persistence,
 * destroy while a sync is writing the volume, and concurrent writers racing
 * syncs and dirty-limit kicks.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';
import { checkTreeAllocated, loggedAllocated, MiB, newPool, readAll, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function fresh(opts: { dirtyMax?: number } = {}) {
  const { dir, cleanup } = await tempDir('strata-volume-');
  cleanups.push(cleanup);
  return { dir, ...(await newPool(dir, { size: 128 * MiB, ...opts })) };
}

describe('volume', () => {
  it('grow past the span of the tree: new space reads zero, and the size survives re-import', async () => {
    const { mgr, home } = await fresh();
    await mgr.create('tank/v', { volsize: '16M', blocksize: '16K', sparse: true }); // exactly 1024 blocks: one level
    const { volume } = await mgr.openVolume('tank/v');
    const a = randomBytes(16 * MiB);
    await volume.write(0, a);
    await (await mgr.pool('tank')).txg.syncNow();
    await mgr.set('tank/v', { volsize: '48M' });
    expect(volume.info().size).toBe(48 * MiB);
    // Before any sync grows the tree, blocks past 1024 must be holes, not aliases of 0..1023.
    expect((await volume.read(16 * MiB, 16 * MiB)).equals(Buffer.alloc(16 * MiB))).toBe(true);
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect(v2.info().size).toBe(48 * MiB);
    const all = await readAll(v2);
    expect(all.subarray(0, 16 * MiB).equals(a)).toBe(true);
    expect(all.subarray(16 * MiB).equals(Buffer.alloc(32 * MiB))).toBe(true);
    await m2.close();
  });

  it('shrink frees the cut-off blocks; growing again reads zeroes; survives re-import', async () => {
    const { mgr, pool, home } = await fresh();
    await mgr.create('tank/v', { volsize: '32M', sparse: true });
    const { volume, release } = await mgr.openVolume('tank/v');
    const a = randomBytes(32 * MiB);
    await volume.write(0, a);
    await pool.txg.syncNow();
    await mgr.set('tank/v', { volsize: '8M' });
    expect(volume.info().size).toBe(8 * MiB);
    for (let i = 0; i < 3; i++) await pool.commit();
    const { bytes } = await checkTreeAllocated(pool, 'tank/v');
    expect(loggedAllocated(pool)).toBe(bytes);
    expect(bytes).toBeLessThan(9 * MiB);
    await mgr.set('tank/v', { volsize: '32M' });
    const back = await readAll(volume);
    expect(back.subarray(0, 8 * MiB).equals(a.subarray(0, 8 * MiB))).toBe(true);
    expect(back.subarray(8 * MiB).equals(Buffer.alloc(24 * MiB))).toBe(true);
    await mgr.set('tank/v', { volsize: '4M' });
    release();
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect(v2.info().size).toBe(4 * MiB);
    expect((await readAll(v2)).equals(a.subarray(0, 4 * MiB))).toBe(true);
    await m2.close();
  });

  it('destroy while a sync is writing the volume: no double free, no leak, pool stays healthy', async () => {
    const { mgr, pool } = await fresh();
    await mgr.create('tank/v', { volsize: '64M', sparse: true });
    const { volume, release } = await mgr.openVolume('tank/v');
    await volume.write(0, randomBytes(8 * MiB));
    await pool.txg.syncNow();
    await volume.write(0, randomBytes(8 * MiB)); // overwrite: the next sync kills the old blocks
    // Destroy exactly while the sync is writing the volume's new blocks.
    const io = pool.io;
    const orig = io.writeMany.bind(io);
    let destroyed: Promise<unknown> | null = null;
    io.writeMany = async (items) => {
      if (!destroyed && items.some((it) => it.p.level === 0 && it.p.type === 1)) {
        release();
        destroyed = mgr.destroy('tank/v');
      }
      return orig(items);
    };
    await pool.txg.syncNow();
    expect(destroyed).not.toBeNull();
    await destroyed;
    io.writeMany = orig;
    for (let i = 0; i < 3; i++) await pool.commit();
    expect(pool.txg.suspended).toBeNull();
    expect(loggedAllocated(pool)).toBe(0);
    await mgr.close();
  });

  it('concurrent writers and readers on disjoint ranges, with syncs kicked by the dirty limit', async () => {
    const { mgr, pool, home } = await fresh({ dirtyMax: 2 * MiB });
    await mgr.create('tank/v', { volsize: '32M', blocksize: '4K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const model = Buffer.alloc(32 * MiB);
    const region = 4 * MiB;
    const workers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 40; i++) {
        const n = 1 + Math.floor(Math.random() * 96 * 1024);
        const o = w * region + Math.floor(Math.random() * (region - n));
        const data = randomBytes(n);
        if (i % 7 === 3) {
          await volume.writeZeroes(o, n);
          model.fill(0, o, o + n);
        } else {
          await volume.write(o, data);
          data.copy(model, o);
        }
        // reads of our own region see our own completed writes
        const ro = w * region + Math.floor(Math.random() * (region - 65536));
        expect((await volume.read(ro, 65536)).equals(model.subarray(ro, ro + 65536)), `worker ${w} read`).toBe(true);
        if (i % 10 === 9) await volume.flush();
      }
    });
    await Promise.all(workers);
    await pool.txg.syncNow();
    expect((await readAll(volume)).equals(model)).toBe(true);
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect((await readAll(v2)).equals(model)).toBe(true);
    await m2.close();
  });

  it('owned writes keep whole blocks as views of the payload, and stay right through partial overwrites, syncs and re-import', async () => {
    const { mgr, home } = await fresh();
    await mgr.create('tank/v', { volsize: '8M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const model = Buffer.alloc(8 * MiB);
    const pool = await mgr.pool('tank');
    let x = 7;
    for (let i = 0; i < 200; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const off = (x % 512) * 4096 + (i % 3 === 0 ? 512 : 0);
      const len = Math.min(8 * MiB - off, i % 2 ? 256 * 1024 : 12 * 1024);
      const payload = randomBytes(len);
      payload.copy(model, off);
      await volume.write(off, payload, { owned: i % 4 !== 3 });
      if (i % 50 === 49) await pool.txg.syncNow();
    }
    expect((await readAll(volume)).equals(model)).toBe(true);
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect((await readAll(v2)).equals(model)).toBe(true);
    await m2.close();
  });
});
