/**
 * Regression (found in review): a dirty base a write holds is never taken by another volume.
 * An origin's partial write (W1) holds its base B, got from the origin's dirty map, while it
 * waits in admit()/throttle(). Meanwhile B's txg syncs (B cached, spare), the origin is
 * snapshotted and cloned, and a partial write to the clone takes B from the ARC (the clone
 * shares the block pointer) and mutates it in place. W1 then copies B, with the clone's bytes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MiB, newPool, rng, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
const BS = 16 * 1024;

describe('spare bases across datasets', () => {
  it('an origin write stalled in admit() does not see a clone write\'s bytes', async () => {
    const { dir, cleanup } = await tempDir('strata-r9-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 128 * MiB });
    cleanups.unshift(() => mgr.close());
    await mgr.create('tank/o', { volsize: '1M', blocksize: '16K', sparse: true });
    const { volume: o } = await mgr.openVolume('tank/o');
    const r = rng(7);
    const d0 = r.bytes(BS);
    const p1 = r.bytes(4096);
    const p2 = r.bytes(4096);
    await o.write(2 * BS, d0); // txg N: B dirty
    // The next admit() waits (as it does under space pressure: syncNow() up to 4 times; or throttle()).
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const admit = pool.admit.bind(pool);
    let stall = true;
    let stalled!: () => void;
    const reached = new Promise<void>((res) => (stalled = res));
    pool.admit = async (...a: Parameters<typeof admit>) => {
      if (stall) {
        stall = false;
        stalled();
        await gate;
      }
      return admit(...a);
    };
    const w1 = o.write(2 * BS + 4096, p1); // base B from the dirty map, then admit
    await reached;
    await pool.txg.syncNow(); // N syncs: B cached, settle -> spare
    await mgr.snapshot(['tank/o@s']);
    await mgr.clone('tank/o@s', ['tank/c']);
    const { volume: c } = await mgr.openVolume('tank/c');
    await c.write(2 * BS + 8192, p2); // takes B from the ARC, fills p2 into it
    release();
    await w1;
    const wantO = Buffer.from(d0);
    p1.copy(wantO, 4096);
    const wantC = Buffer.from(d0);
    p2.copy(wantC, 8192);
    expect((await c.read(2 * BS, BS)).equals(wantC), 'clone').toBe(true);
    const gotO = await o.read(2 * BS, BS);
    expect(gotO.subarray(8192, 12288).equals(d0.subarray(8192, 12288)), 'origin got the clone\'s bytes').toBe(true);
    expect(gotO.equals(wantO), 'origin').toBe(true);
    await pool.txg.syncNow();
    expect((await o.read(2 * BS, BS)).equals(wantO), 'origin after sync').toBe(true);
  });
});
