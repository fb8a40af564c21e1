/**
 * A cow volume's writes copy what they overwrite into the newest snapshot's
 * store: that is dirty data too, and must be admitted like the write's own.
 * It was not, and on raidz (where a block takes more than its logical size)
 * overwriting a snapshotted cow volume filled the pool past what the sync
 * could allocate: the pool suspended (EIO) where the writer should have had
 * ENOSPC. Zeroing a range copied every block of it into the store in one
 * txg, past the dirty limit as well as the free space.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';
import { tempDir } from '../pool/engine/helpers.js';

const MiB = 1024 * 1024;

/** A 3-wide raidz1 pool of 100 MiB devices with a 100 MiB sparse cow volume, written full, and a snapshot of it. */
async function fullCowOnRaidz(fn: (mgr: PoolManager, snapData: Buffer) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('strata-cowfull-');
  const mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000, dirtyMax: 8 * MiB });
  try {
    await mgr.poolCreate('tank', { groups: [{ type: 'raidz', nparity: 1, paths: [0, 1, 2].map((i) => join(dir, `d${i}`)) }], createSize: 100 * MiB });
    await mgr.create('tank/v', { volsize: '100M', sparse: true, props: { snapmode: 'cow' } });
    const snapData = randomBytes(100 * MiB);
    const { volume, release } = await mgr.openVolume('tank/v');
    try {
      for (let o = 0; o < snapData.length; o += MiB) await volume.write(o, snapData.subarray(o, o + MiB));
      await volume.flush();
    } finally {
      await release();
    }
    await mgr.snapshot(['tank/v@s']);
    await fn(mgr, snapData);
  } finally {
    await mgr.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await cleanup();
  }
}

/** After ENOSPC: the pool still serves, the snapshot still reads as taken, and its destruction gives the room back. */
async function stillHealthy(mgr: PoolManager, snapData: Buffer): Promise<void> {
  const pool = await mgr.pool('tank');
  expect(pool.txg.suspended).toBeFalsy();
  const snap = await mgr.openSnapshot('tank/v@s');
  try {
    for (let o = 0; o < snapData.length; o += 10 * MiB) expect((await snap.device.read(o, MiB)).equals(snapData.subarray(o, o + MiB)), `snapshot at ${o}`).toBe(true);
  } finally {
    snap.release();
  }
  await mgr.destroySnapshots('tank/v@s');
  const { volume, release } = await mgr.openVolume('tank/v');
  try {
    const d = randomBytes(4 * MiB);
    await volume.write(0, d);
    await volume.flush();
    expect((await volume.read(0, 4 * MiB)).equals(d)).toBe(true);
  } finally {
    await release();
  }
}

describe('a cow volume filling its raidz pool', () => {
  it('overwrites get ENOSPC, never a suspended pool', async () => {
    await fullCowOnRaidz(async (mgr, snapData) => {
      const { volume, release } = await mgr.openVolume('tank/v');
      let error: unknown = null;
      try {
        for (let o = 0; o < snapData.length; o += 64 * 1024) await volume.write(o, randomBytes(64 * 1024));
        await volume.flush();
      } catch (e) {
        error = e;
      } finally {
        await release();
      }
      // 100 MiB of new data and 100 MiB of copies do not fit in what the fill left.
      expect((error as { code?: string } | null)?.code).toBe('ENOSPC');
      await stillHealthy(mgr, snapData);
    });
  }, 120_000);

  it('zeroing the whole volume gets ENOSPC or succeeds, never a suspended pool', async () => {
    await fullCowOnRaidz(async (mgr, snapData) => {
      const pool = await mgr.pool('tank');
      const { volume, release } = await mgr.openVolume('tank/v');
      let error: unknown = null;
      try {
        await volume.writeZeroes(0, snapData.length);
        await volume.flush();
      } catch (e) {
        error = e;
      } finally {
        await release();
      }
      if (error) expect((error as { code?: string }).code).toBe('ENOSPC');
      expect(pool.txg.suspended).toBeFalsy();
      await stillHealthy(mgr, snapData);
    });
  }, 120_000);
});
