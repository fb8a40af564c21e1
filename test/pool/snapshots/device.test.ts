/**
 * A snapshot as a read-only BlockDevice: reads and block status from the
 * snapshot's tree; an open device follows its snapshot through a rename
 * and a promote (an NBD export must not break) and fails with ENOENT once
 * the snapshot is destroyed; writes are refused.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { SnapshotDevice } from '../../../src/volume/snapshot-device.js';
import { MiB, tempDir } from '../engine/helpers.js';

describe('snapshot devices', () => {
  it('read, block status, rename, promote, destroy', async () => {
    const { dir, cleanup } = await tempDir('strata-snapdev-');
    try {
      const mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000 });
      await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 128 * MiB });
      await mgr.create('tank/vm', { volsize: '2M', blocksize: '16384', sparse: true });
      const { volume, release } = await mgr.openVolume('tank/vm');
      const a = Buffer.alloc(65536, 0xab);
      await volume.write(MiB, a);
      await mgr.snapshot(['tank/vm@one']);
      await volume.write(MiB, Buffer.alloc(65536, 0xcd));
      release();
      const { device, release: rel } = await mgr.openSnapshot('tank/vm@one');
      expect(device.info()).toMatchObject({ size: 2 * MiB, readOnly: true });
      expect((await device.read(MiB, 65536)).equals(a)).toBe(true);
      expect(await device.blockStatus(0, 2 * MiB)).toEqual([
        { offset: 0, length: MiB, hole: true, zero: true },
        { offset: MiB, length: 65536, hole: false, zero: false },
        { offset: MiB + 65536, length: MiB - 65536, hole: true, zero: true },
      ]);
      await expect(device.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EPERM' });

      await mgr.rename('tank/vm@one', 'renamed');
      expect((await device.read(MiB, 65536)).equals(a)).toBe(true);
      await mgr.clone('tank/vm@renamed', ['tank/c']);
      await mgr.promote('tank/c'); // the snapshot now belongs to tank/c
      expect((await device.read(MiB, 65536)).equals(a)).toBe(true);
      await mgr.destroy('tank/vm', { force: true });
      expect((await device.read(MiB, 65536)).equals(a)).toBe(true);
      await mgr.destroySnapshots('tank/c@renamed', { force: true });
      await expect(device.read(MiB, 512)).rejects.toMatchObject({ code: 'ENOENT' });
      rel();
      await mgr.close();
    } finally {
      await cleanup();
    }
  });
});
