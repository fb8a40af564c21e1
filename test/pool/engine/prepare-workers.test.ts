/**
 * A pool whose syncs prepare blocks on a worker thread: data of every kind
 * (random, compressible, zero, partly zero) written, synced, re-imported
 * and read back; space accounting matches what the trees reach; and a
 * worker that dies mid-life leaves the pool writing inline, losing nothing.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { PrepareWorkers } from '../../../src/pool/io/prepare-workers.js';
import { checkTreeAllocated, loggedAllocated, MiB, newPool, readAll, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** 24 MiB of mixed data: every 16 KiB block is random, text, zero, or half zero. */
function mixed(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; off += 16384, i++) {
    switch (i % 4) {
      case 0:
        randomBytes(16384).copy(out, off);
        break;
      case 1:
        out.write(`block ${i} `.repeat(1600), off, 16384);
        break;
      case 2:
        break; // zero: a hole
      case 3:
        randomBytes(8192).copy(out, off + 4096);
        break;
    }
  }
  return out;
}

describe('prepare workers in the pool', () => {
  it('blocks prepared on a worker read back exactly, after re-import, with exact space accounting', async () => {
    const { dir, cleanup } = await tempDir('strata-prepw-');
    cleanups.push(cleanup);
    const { mgr, pool, home } = await newPool(dir, { size: 256 * MiB });
    const workers = PrepareWorkers.start(1);
    expect(workers?.available).toBe(true);
    pool.io.workers = workers;
    await mgr.create('tank/v', { volsize: '24M', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const data = mixed(24 * MiB);
    await volume.write(0, data);
    await pool.txg.syncNow();
    expect(workers!.jobsDone).toBeGreaterThan(0); // the syncs really went through the worker
    // Overwrite a middle stretch (frees blocks written through the workers), sync again.
    const patch = mixed(4 * MiB).reverse();
    await volume.write(8 * MiB, patch);
    patch.copy(data, 8 * MiB);
    await pool.txg.syncNow();
    for (let i = 0; i < 3; i++) await pool.commit();
    const { bytes } = await checkTreeAllocated(pool, 'tank/v');
    expect(loggedAllocated(pool)).toBe(bytes);
    expect((await readAll(volume)).equals(data)).toBe(true);
    await mgr.close();
    await workers!.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect((await readAll(v2)).equals(data)).toBe(true);
    await m2.close();
  });

  it('a worker that is gone: batches are prepared inline, nothing lost', async () => {
    const { dir, cleanup } = await tempDir('strata-prepw-');
    cleanups.push(cleanup);
    const { mgr, pool, home } = await newPool(dir, { size: 256 * MiB });
    const workers = PrepareWorkers.start(1)!;
    pool.io.workers = workers;
    await mgr.create('tank/v', { volsize: '16M', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const a = mixed(8 * MiB);
    await volume.write(0, a);
    // Stopped under the pool's feet, while (or just before) a sync sends it batches.
    const syncing = pool.txg.syncNow();
    await workers.close();
    await syncing;
    const b = mixed(8 * MiB).reverse();
    await volume.write(8 * MiB, b);
    await pool.txg.syncNow();
    await mgr.close();
    const m2 = new PoolManager(home);
    const { volume: v2 } = await m2.openVolume('tank/v');
    expect((await readAll(v2)).equals(Buffer.concat([a, b]))).toBe(true);
    await m2.close();
  });
});
