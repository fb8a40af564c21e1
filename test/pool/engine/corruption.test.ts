/**
 * Silent corruption is detected: bytes flipped inside a block on the device
 * make reads of that block fail with EIO (never wrong data), other blocks
 * still read, and the device's CKSUM counter goes up. Metadata keeps two or
 * three copies, so losing one copy of an indirect block reads fine.
 */
import { open } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import type { BlockPointer } from '../../../src/pool/blkptr.js';
import { LEAF_DATA_START } from '../../../src/pool/vdev/types.js';
import { MiB, newPool, rng, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function flip(device: string, bp: BlockPointer, copy: number, at: number): Promise<void> {
  const d = bp.dvas[copy]!;
  const fh = await open(device, 'r+');
  try {
    const off = LEAF_DATA_START + d.offset + (at % bp.psize);
    const b = Buffer.alloc(8);
    await fh.read(b, 0, 8, off);
    for (let i = 0; i < 8; i++) b[i]! ^= 0xa5;
    await fh.write(b, 0, 8, off);
  } finally {
    await fh.close();
  }
}

async function setup(compression: string) {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const { mgr, home, device } = await newPool(dir, { size: 64 * MiB });
  await mgr.create('tank/v', { volsize: '4M', sparse: true, props: { compression } });
  const { volume } = await mgr.openVolume('tank/v');
  const r = rng(11);
  const data = Buffer.alloc(4 * MiB);
  for (let b = 0; b < 256; b++) {
    // compressible text in odd blocks, random bytes in even ones
    const blk = b % 2 ? Buffer.from(`block ${b} `.repeat(2000).slice(0, 16384)) : r.bytes(16384);
    blk.copy(data, b * 16384);
  }
  await volume.write(0, data);
  const pool = await mgr.pool('tank');
  await pool.txg.syncNow(); // into the block tree (a flush would only write the intent log)
  const { obj } = pool.objectOf('tank/v');
  const bps = new Map<number, BlockPointer>();
  for (const b of [10, 11, 100]) bps.set(b, (await obj.committedBp(b))!);
  const root = obj.dnode.root!;
  await mgr.close();
  return { home, device, data, bps, root };
}

async function reopen(home: string) {
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
  const { volume } = await mgr.openVolume('tank/v');
  return { mgr, volume };
}

async function cksumErrors(mgr: PoolManager): Promise<number> {
  const st = (await mgr.status('tank'))[0]!;
  return (st.config as { errors: { cksum: number } }[])[0]!.errors.cksum;
}

describe('corruption is detected', () => {
  for (const compression of ['off', 'lz4']) {
    it(`a flipped data block reads as EIO, never wrong data (compression=${compression})`, async () => {
      const { home, device, data, bps } = await setup(compression);
      await flip(device, bps.get(10)!, 0, 1000); // random block
      await flip(device, bps.get(11)!, 0, 10); // compressible block
      const { mgr, volume } = await reopen(home);
      expect(await cksumErrors(mgr)).toBe(0);
      for (let i = 0; i < 2; i++) {
        // twice: a failed read must not leave anything in the cache
        await expect(volume.read(10 * 16384 + 5, 100)).rejects.toMatchObject({ code: 'EIO' });
        await expect(volume.read(11 * 16384, 16384)).rejects.toMatchObject({ code: 'EIO' });
        await expect(volume.read(9 * 16384, 3 * 16384)).rejects.toMatchObject({ code: 'EIO' });
      }
      // the neighbours and everything else still read correctly
      expect((await volume.read(9 * 16384, 16384)).equals(data.subarray(9 * 16384, 10 * 16384))).toBe(true);
      expect((await volume.read(12 * 16384, 100 * 16384)).equals(data.subarray(12 * 16384, 112 * 16384))).toBe(true);
      expect(await cksumErrors(mgr)).toBeGreaterThanOrEqual(2);
      const st = (await mgr.status('tank'))[0]!;
      expect(st.errors).toBeGreaterThan(0);
      // Overwriting the bad block repairs it (copy-on-write: a new block is written).
      await volume.write(10 * 16384, data.subarray(10 * 16384, 11 * 16384));
      await volume.flush();
      expect((await volume.read(10 * 16384, 16384)).equals(data.subarray(10 * 16384, 11 * 16384))).toBe(true);
      await mgr.close();
    });
  }

  it('one bad copy of an indirect block (ditto) still reads; both bad is EIO', async () => {
    const { home, device, data, root } = await setup('lz4');
    expect(root.dvas.length).toBeGreaterThanOrEqual(2);
    await flip(device, root, 0, 17);
    let { mgr, volume } = await reopen(home);
    expect((await volume.read(0, 4 * MiB)).equals(data)).toBe(true);
    expect(await cksumErrors(mgr)).toBe(1);
    await mgr.close();
    // the same flip on the other copy too: nothing below it can be reached
    await flip(device, root, 1, 17);
    ({ mgr, volume } = await reopen(home));
    await expect(volume.read(0, 16384)).rejects.toMatchObject({ code: 'EIO' });
    await mgr.close();
  });

  it('a corrupted copy of the MOS root or directory (3 and 2 copies) still imports', async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    const { mgr, home, device } = await newPool(dir, { size: 64 * MiB });
    await mgr.create('tank/v', { volsize: '1M', sparse: true });
    const pool = await mgr.pool('tank');
    const rootBp = pool.mos.rootBp!;
    const dirBp = pool.mos.dir.dnode.root!;
    await mgr.close();
    await flip(device, rootBp, 0, 5);
    await flip(device, dirBp, 0, 5);
    const m2 = new PoolManager(home);
    expect((await m2.datasets(['tank/v'], false))[0]!.volsize).toBe(MiB);
    await m2.close();
  });
});
