/**
 * Each strategy end to end through PoolManager: snapshot, overwrite, read
 * the snapshot back, rollback, destroy with merge, clone (where allowed),
 * across export/import.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { PoolManager } from '../../src/daemon/services.js';
import { MiB, newPool, tempDir } from '../pool/engine/helpers.js';

const bs = 16384;
const fill = (v: number, n = bs) => Buffer.alloc(n, v);

async function readAll(dev: { read(o: number, l: number): Promise<Buffer> }, size: number): Promise<Buffer> {
  return dev.read(0, size);
}

describe.each(['native', 'cow', 'row'] as const)('snapmode=%s', (mode) => {
  it('snapshots keep their data through overwrites, deletes, rollback and reimport', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let { mgr } = await newPool(dir);
      const size = 64 * bs;
      await mgr.create('tank/v', { volsize: String(size), sparse: true, props: { snapmode: mode } });
      const expect0 = Buffer.alloc(size);
      let { volume: v, release } = await mgr.openVolume('tank/v');
      for (let b = 0; b < 32; b++) await v.write(b * bs, fill(1 + b));
      fill(0).copy(expect0); // placeholder
      const s1 = await readAll(v, size);
      await mgr.snapshot(['tank/v@s1']);
      // whole-block overwrites, partial writes, zeroes over data, trims
      for (let b = 0; b < 16; b++) await v.write(b * bs, fill(100 + b));
      await v.write(20 * bs + 100, fill(7, 5000));
      await v.writeZeroes(24 * bs, 2 * bs);
      await v.write(40 * bs, fill(9));
      const s2 = await readAll(v, size);
      await mgr.snapshot(['tank/v@s2']);
      await v.write(0, fill(200, 3 * bs));
      await v.writeZeroes(20 * bs, 8 * bs);
      await v.trim(0, bs);
      const live = await readAll(v, size);

      const check = async () => {
        const a = await mgr.openSnapshot('tank/v@s1');
        expect((await a.device.read(0, size)).equals(s1)).toBe(true);
        a.release();
        const b = await mgr.openSnapshot('tank/v@s2');
        expect((await b.device.read(0, size)).equals(s2)).toBe(true);
        b.release();
      };
      await check();
      expect((await readAll(v, size)).equals(live)).toBe(true);
      release();
      await mgr.poolExport('tank');
      await mgr.close();
      mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000 });
      await mgr.poolImport('tank', dir);
      ({ volume: v, release } = await mgr.openVolume('tank/v'));
      expect((await readAll(v, size)).equals(live)).toBe(true);
      await check();
      // diff names the blocks changed since s1
      const d = await mgr.diff('tank/v@s1');
      expect(d.length).toBeGreaterThan(0);
      // destroy the newer snapshot: s1 still reads right (cow and row merge)
      await mgr.destroySnapshots('tank/v@s2');
      const a = await mgr.openSnapshot('tank/v@s1');
      expect((await a.device.read(0, size)).equals(s1)).toBe(true);
      a.release();
      expect((await readAll(v, size)).equals(live)).toBe(true);
      // clone where the strategy allows it
      if (mode !== 'cow') {
        await mgr.clone('tank/v@s1', ['tank/c']);
        const c = await mgr.openVolume('tank/c');
        expect((await c.volume.read(0, size)).equals(s1)).toBe(true);
        await c.volume.write(bs, fill(55));
        const cexp = Buffer.from(s1);
        fill(55).copy(cexp, bs);
        expect((await c.volume.read(0, size)).equals(cexp)).toBe(true);
        c.release();
        await mgr.rollbackToOrigin('tank/c');
        const c2 = await mgr.openVolume('tank/c');
        expect((await c2.volume.read(0, size)).equals(s1)).toBe(true);
        c2.release();
        await mgr.destroy('tank/c', {});
      } else {
        await expect(mgr.clone('tank/v@s1', ['tank/c'])).rejects.toThrow(/cannot be cloned/);
      }
      release();
      await mgr.rollback('tank/v@s1', {});
      ({ volume: v, release } = await mgr.openVolume('tank/v'));
      expect((await readAll(v, size)).equals(s1)).toBe(true);
      await v.write(5 * bs, fill(77));
      release();
      await mgr.destroy('tank/v', { recursive: true });
      await mgr.close();
    } finally {
      await cleanup();
    }
  }, 60_000);
});

describe('write amplification is measured at the device layer', () => {
  it.each([
    ['native', 0.9, 1.2],
    ['row', 0.9, 1.2],
    ['cow', 2.5, 3.5],
  ] as const)('%s: first overwrites of whole blocks after a snapshot', async (mode, lo, hi) => {
    const { dir, cleanup } = await tempDir();
    try {
      let { mgr } = await newPool(dir, { size: 256 * MiB });
      const size = 32 * MiB;
      await mgr.create('tank/v', { volsize: String(size), sparse: true, props: { snapmode: mode, compression: 'off' } });
      let { volume: v, release } = await mgr.openVolume('tank/v');
      const { randomBytes } = await import('node:crypto');
      for (let off = 0; off < size; off += MiB) await v.write(off, randomBytes(MiB));
      release();
      // Cold cache: the copy-out reads must come from the device.
      await mgr.poolExport('tank');
      await mgr.close();
      mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000 });
      await mgr.poolImport('tank', dir);
      await mgr.snapshot(['tank/v@s']);
      ({ volume: v, release } = await mgr.openVolume('tank/v'));
      const pool = await mgr.pool('tank');
      (await mgr.amplification(['tank/v'], { reset: true }));
      for (let b = 0; b < size / bs; b += 2) await v.write(b * bs, randomBytes(bs));
      await pool.txg.syncNow();
      const [a] = await mgr.amplification(['tank/v']);
      expect(a!.guestWriteBytes).toBe(size / 2);
      expect(a!.amplification).toBeGreaterThanOrEqual(lo);
      expect(a!.amplification).toBeLessThanOrEqual(hi);
      const row = (await mgr.datasets(['tank/v'], false))[0]!;
      expect(row.props['amplification']!.value).toMatch(/^\d+\.\d\dx$/);
      release();
      await mgr.close();
    } finally {
      await cleanup();
    }
  }, 120_000);
});

describe('row chains', () => {
  /** Device reads for `n` random 4K reads with a cold cache (the index already built). */
  async function readsAtDepth(depth: number): Promise<number> {
    const { dir, cleanup } = await tempDir();
    try {
      let { mgr } = await newPool(dir);
      const size = 16 * MiB;
      await mgr.create('tank/v', { volsize: String(size), sparse: true, props: { snapmode: 'row' } });
      const { randomBytes } = await import('node:crypto');
      let { volume: v, release } = await mgr.openVolume('tank/v');
      for (let off = 0; off < size; off += MiB) await v.write(off, randomBytes(MiB));
      for (let i = 0; i < depth; i++) {
        await mgr.snapshot([`tank/v@s${i}`]);
        for (let k = 0; k < 8; k++) await v.write(((i * 37 + k * 101) % (size / bs)) * bs, randomBytes(bs));
      }
      release();
      await mgr.poolExport('tank');
      await mgr.close();
      mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000 });
      await mgr.poolImport('tank', dir);
      const pool = await mgr.pool('tank');
      ({ volume: v, release } = await mgr.openVolume('tank/v'));
      await v.read(0, 4096); // builds the index
      pool.arc.clear();
      const before = pool.io.stats.readOps;
      let x = 12345;
      for (let i = 0; i < 300; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        await v.read((x % (size / 4096)) * 4096, 4096);
      }
      const n = pool.io.stats.readOps - before;
      release();
      await mgr.close();
      return n;
    } finally {
      await cleanup();
    }
  }

  it('a read costs the same device reads at depth 50 as at depth 1 (the index)', async () => {
    const d1 = await readsAtDepth(1);
    const d50 = await readsAtDepth(50);
    console.log(`row: device reads for 300 cold 4K reads: depth 1 ${d1}, depth 50 ${d50} (${(d50 / d1).toFixed(2)}x)`);
    expect(d50 / d1).toBeLessThan(1.5);
  }, 120_000);

  it('compactdepth keeps the chain that deep by merging the oldest layers; data and remaining snapshots intact', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { mgr } = await newPool(dir);
      const size = 32 * bs;
      await mgr.create('tank/v', { volsize: String(size), sparse: true, props: { snapmode: 'row', compactdepth: '3' } });
      const { volume: v, release } = await mgr.openVolume('tank/v');
      const views: Buffer[] = [];
      for (let i = 0; i < 6; i++) {
        await v.write((i % 32) * bs, fill(10 + i));
        await v.write(((i * 7) % 32) * bs + 100, fill(50 + i, 3000));
        views.push(await v.read(0, size));
        await mgr.snapshot([`tank/v@s${i}`]);
      }
      const names = (await mgr.snapshotRows(['tank/v'], true)).map((r) => r.name);
      expect(names).toEqual(['tank/v@s3', 'tank/v@s4', 'tank/v@s5']);
      for (let i = 3; i < 6; i++) {
        const s = await mgr.openSnapshot(`tank/v@s${i}`);
        expect((await s.device.read(0, size)).equals(views[i]!)).toBe(true);
        s.release();
      }
      expect((await v.read(0, size)).equals(views[5]!)).toBe(true);
      release();
      await mgr.close();
    } finally {
      await cleanup();
    }
  }, 60_000);
});
