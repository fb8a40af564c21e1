/**
 * Owned write payloads lent to a pool volume (WriteOptions.release): the
 * volume keeps whole blocks as views of the payload until their txg syncs,
 * then gives the payload back. The owner here scribbles over every payload
 * the moment it comes back, as the NBD server's pool may reuse it for the
 * next write: any view kept past that (dirty maps, the ARC, a
 * read-modify-write's base held across a sync) reads as 0xde and the model
 * comparison fails.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';
import { MiB, newPool, readAll, rng, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const KiB = 1024;

describe('lent write payloads', () => {
  it('come back once their txg syncs, and nothing reads them after', async () => {
    const { dir, cleanup } = await tempDir('strata-lent-');
    cleanups.push(cleanup);
    const { mgr, pool, home } = await newPool(dir, { size: 128 * MiB, dirtyMax: 2 * MiB });
    await mgr.create('tank/v', { volsize: '8M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const size = 8 * MiB;
    const model = Buffer.alloc(size);
    const r = rng(7);
    let lent = 0;
    let back = 0;
    const owned = (offset: number, data: Buffer) => {
      lent++;
      let returned = false;
      return volume.write(offset, data, {
        owned: true,
        release: () => {
          expect(returned).toBe(false); // exactly once
          returned = true;
          back++;
          data.fill(0xde);
        },
      });
    };
    const REGION = 128 * KiB;
    for (let round = 0; round < 120; round++) {
      // Disjoint regions per round, so concurrent operations have one right answer.
      const regions = new Set<number>();
      while (regions.size < 6) regions.add(r.below(size / REGION));
      const ops: Promise<unknown>[] = [];
      for (const reg of regions) {
        const base = reg * REGION;
        const kind = r.below(6);
        if (kind <= 1) {
          // Whole blocks, maybe with partial edges; then a partial write into the same
          // (still dirty) blocks while syncs run: its base must not be the lent payload.
          const off = base + r.below(4) * 4 * KiB;
          const len = [16, 32, 48, 64, 100][r.below(5)]! * KiB;
          const data = r.bytes(len);
          data.copy(model, off);
          const p = owned(off, data);
          ops.push(p);
          if (kind === 1) {
            const off2 = off + r.below(len / (4 * KiB)) * 4 * KiB;
            const small = r.bytes(4 * KiB);
            ops.push(p.then(() => pool.txg.syncNow()));
            small.copy(model, off2);
            ops.push(p.then(() => volume.write(off2, small)));
          }
        } else if (kind === 2) {
          const off = base + r.below(REGION / 512 - 8) * 512;
          const data = r.bytes(4 * KiB);
          data.copy(model, off);
          ops.push(volume.write(off, data));
        } else if (kind === 3) {
          const want = Buffer.from(model.subarray(base, base + REGION));
          ops.push(volume.read(base, REGION).then((got) => expect(got.equals(want), `round ${round} region ${reg}`).toBe(true)));
        } else if (kind === 4) {
          ops.push(pool.txg.syncNow());
        } else {
          ops.push(volume.flush());
        }
      }
      await Promise.all(ops);
      if (round % 40 === 39) await mgr.snapshot(['tank/v@s' + round]);
    }
    expect((await readAll(volume)).equals(model)).toBe(true);
    await pool.txg.syncNow();
    expect(back).toBe(lent);
    // Read again with the cache emptied: what the devices hold is right too.
    pool.arc.clear();
    expect((await readAll(volume)).equals(model)).toBe(true);
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect((await readAll(v2)).equals(model)).toBe(true);
    await m2.close();
  });

  it('a write that keeps no whole block gives its payload back at once; a cached block is never a lent view', async () => {
    const { dir, cleanup } = await tempDir('strata-lent-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
    await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    let back = 0;
    await volume.write(4 * KiB, Buffer.alloc(8 * KiB, 1), { owned: true, release: () => back++ });
    expect(back).toBe(1);
    const whole = Buffer.alloc(64 * KiB, 2);
    await volume.write(64 * KiB, whole, { owned: true, release: () => back++ });
    expect(back).toBe(1);
    await pool.txg.syncNow();
    expect(back).toBe(2);
    // The ARC kept nothing that views the payload: scribbling it changes no read.
    whole.fill(0xde);
    expect((await volume.read(64 * KiB, 64 * KiB)).equals(Buffer.alloc(64 * KiB, 2))).toBe(true);
    await mgr.close();
  });

  it("a partial write whose base is a lent block keeps it right when that block's txg syncs while it waits", async () => {
    const { dir, cleanup } = await tempDir('strata-lent-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
    await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const payload = Buffer.alloc(16 * KiB, 0xaa);
    await volume.write(0, payload, { owned: true, release: () => payload.fill(0xde) });
    // Block 0 is a view of the payload in txg t; t starts syncing. The partial write below
    // takes its base while t is still dirty and then waits (in the throttle) until t has
    // synced and the payload was scribbled over.
    const syncing = pool.txg.syncNow();
    const throttle = pool.txg.throttle.bind(pool.txg);
    pool.txg.throttle = async (bytes: number) => {
      await syncing;
      return throttle(bytes);
    };
    try {
      await volume.write(4 * KiB, Buffer.alloc(4 * KiB, 0x22));
    } finally {
      pool.txg.throttle = throttle;
    }
    expect(payload[0]).toBe(0xde); // it did come back first
    const want = Buffer.concat([Buffer.alloc(4 * KiB, 0xaa), Buffer.alloc(4 * KiB, 0x22), Buffer.alloc(8 * KiB, 0xaa)]);
    expect((await volume.read(0, 16 * KiB)).equals(want)).toBe(true);
    await pool.txg.syncNow();
    pool.arc.clear();
    expect((await volume.read(0, 16 * KiB)).equals(want)).toBe(true);
    await mgr.close();
  });

  it('an owner whose release throws does not fail the committed txg, and the others still come back', async () => {
    const { dir, cleanup } = await tempDir('strata-lent-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
    await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    let second = 0;
    await volume.write(0, Buffer.alloc(16 * KiB, 1), { owned: true, release: () => { throw new Error('owner bug'); } });
    await volume.write(64 * KiB, Buffer.alloc(16 * KiB, 2), { owned: true, release: () => second++ });
    const before = pool.txg.synced;
    await pool.txg.syncNow();
    expect(pool.txg.suspended).toBeNull();
    expect(pool.txg.synced).toBeGreaterThan(before);
    expect(second).toBe(1);
    await mgr.close();
  });
});
