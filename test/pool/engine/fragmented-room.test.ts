/**
 * A thick volume on a nearly full pool keeps taking random overwrites.
 * Copy-on-write overwrites free old blocks all over the pool, as holes of
 * one block each, while the syncs' indirect blocks need runs of up to 128K
 * (the metadata reserve, io/allocate.ts). Data laid down by first-fit
 * spent the pool's remaining long runs on 16K blocks while the holes piled
 * up, and after a few hundred MiB of 4K random writes a 1150 MiB thick
 * volume on a 1.25 GiB pool (91% full, 118 MB free) got ENOSPC: no run
 * left for the metadata reserve. Small blocks now go into holes first,
 * anywhere on the vdev, exact fits first, once it is low on space
 * (space/allocator.ts).
 */
import { afterEach, describe, it } from 'vitest';
import { expectModel, fillWithModel, MiB, newPool, randomOverwritesAtDepth32, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('random overwrites on a nearly full, fragmenting pool', () => {
  it('4K random overwrites at depth 32 of a thick volume filling most of the pool all succeed, and read back', async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    // A thick 128 MiB volume on a 160 MiB pool: about 16% of the pool stays free once it is written.
    const { mgr } = await newPool(dir, { size: 160 * MiB, dirtyMax: 8 * MiB });
    const size = 128 * MiB;
    await mgr.create('tank/v', { volsize: String(size) });
    const { volume, release } = await mgr.openVolume('tank/v');
    try {
      const model = await fillWithModel(volume, size);
      // About five times the volume's 8192 blocks; the old allocator failed after fewer than 4,000.
      await randomOverwritesAtDepth32(volume, model, 40_000, 5);
      await expectModel(volume, model);
    } finally {
      await release();
      await mgr.close();
    }
  }, 300_000);
});
