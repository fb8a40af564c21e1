/**
 * Overwrites on a pool with room never get ENOSPC, however much is in
 * flight. Copy-on-write overwrites take new space before their syncs give
 * the old back (TXG_DEFER txgs later), so at depth 32 the dirty data and
 * deferred frees in flight can exceed what is free, though once they settle
 * the pool is no fuller than before. Writers must wait for txgs to commit
 * then, not fail: a 1 GiB volume on a 1.5 GiB pool, a third of it free, got
 * ENOSPC under 4K random writes at depth 32.
 */
import { afterEach, describe, it } from 'vitest';
import { expectModel, fillWithModel, MiB, newPool, randomOverwritesAtDepth32, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('overwrites with data in flight beyond the free space', () => {
  it('4K random overwrites at depth 32 of a volume filling two thirds of the pool all succeed, and read back', async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    // 32 MiB of dirty data may be in flight; about 30 MiB are free once the volume is written.
    const { mgr } = await newPool(dir, { size: 96 * MiB, dirtyMax: 32 * MiB });
    const size = 56 * MiB;
    await mgr.create('tank/v', { volsize: String(size), sparse: true });
    const { volume, release } = await mgr.openVolume('tank/v');
    try {
      const model = await fillWithModel(volume, size);
      await randomOverwritesAtDepth32(volume, model, 12_000, 11);
      await expectModel(volume, model);
    } finally {
      await release();
      await mgr.close();
    }
  }, 120_000);
});
