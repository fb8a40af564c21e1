/**
 * Uberblock ring and labels on a real (file) pool: a torn or corrupt newest
 * uberblock falls back to the previous txg; damage to either label pair
 * still imports from the other.
 */
import { open } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjType } from '../../../src/pool/blkptr.js';
import { decodeUberblock, encodeUberblock, UB_RING, UB_SLOT, type Uberblock } from '../../../src/pool/txg/uberblock.js';
import { labelOffsets, readLabels } from '../../../src/pool/txg/label.js';
import { FileLeaf } from '../../../src/pool/vdev/leaf-file.js';
import { LABEL_SIZE } from '../../../src/pool/vdev/types.js';
import { PoolManager } from '../../../src/daemon/services.js';
import { MiB, newPool, tempDir } from '../engine/helpers.js';

const RING = 128 * 1024;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function patch(path: string, at: number, f: (b: Buffer) => void, len: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, at);
    f(b);
    await fh.write(b, 0, len, at);
  } finally {
    await fh.close();
  }
}

async function newestTxg(path: string): Promise<number> {
  const leaf = await FileLeaf.open(path, 'probe', { readOnly: true });
  try {
    return (await readLabels(leaf)).best!.txg;
  } finally {
    await leaf.close();
  }
}

/** A pool whose volume holds 'A' in block 0 at txg T-1 and 'B' at txg T (the newest). */
async function twoVersions() {
  const { dir, cleanup } = await tempDir();
  cleanups.push(cleanup);
  const { mgr, home, device } = await newPool(dir, { size: 64 * MiB });
  await mgr.create('tank/v', { volsize: '1M', sparse: true });
  const { volume } = await mgr.openVolume('tank/v');
  const pool = await mgr.pool('tank');
  // Commit txgs (a flush would only write the intent log).
  await volume.write(0, Buffer.alloc(16384, 'A'));
  await pool.txg.syncNow();
  await volume.write(0, Buffer.alloc(16384, 'B'));
  await pool.txg.syncNow();
  await mgr.close();
  return { home, device, T: await newestTxg(device) };
}

async function block0(home: string): Promise<{ text: string; mgr: PoolManager }> {
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
  const { volume } = await mgr.openVolume('tank/v');
  const text = (await volume.read(0, 1)).toString();
  return { text, mgr };
}

describe('uberblock', () => {
  it('encodes and decodes; any flipped byte makes the slot invalid', () => {
    const ub: Uberblock = {
      version: 1,
      txg: 77,
      poolGuid: 0x1234567890abcdefn,
      timestamp: 1700000000000,
      guidSum: 42n,
      rootBp: { dvas: [{ vdev: 0, offset: 8192, asize: 4096 }], lsize: 300, psize: 4096, comp: 'lz4', cksumType: 'sha256', type: ObjType.MosRoot, level: 0, fill: 1, birth: 77, cksum: Buffer.alloc(32, 9) },
    };
    const enc = encodeUberblock(ub);
    expect(enc.length).toBe(UB_SLOT);
    const dec = decodeUberblock(enc)!;
    expect(dec.txg).toBe(77);
    expect(dec.poolGuid).toBe(ub.poolGuid);
    expect(dec.rootBp.dvas).toEqual(ub.rootBp.dvas);
    for (const at of [0, 16, 40, 100, 168, 500, 1000]) {
      const bad = Buffer.from(enc);
      bad[at]! ^= 0x01;
      expect(decodeUberblock(bad), `flip at ${at}`).toBeNull();
    }
    // a torn write: the first half new, the rest stale zeroes
    const torn = Buffer.alloc(UB_SLOT);
    enc.copy(torn, 0, 0, 512);
    expect(decodeUberblock(torn)).toBeNull();
  });

  it('a newest uberblock corrupt in all labels imports at txg-1', async () => {
    const { home, device, T } = await twoVersions();
    for (const off of labelOffsets((await import("node:fs")).statSync(device).size)) {
      await patch(device, off + RING + (T % UB_RING) * UB_SLOT + 200, (b) => void (b[0]! ^= 0xff), 1);
    }
    expect(await newestTxg(device)).toBe(T - 1);
    const { text, mgr } = await block0(home);
    expect(text).toBe('A');
    // The pool is writable again from there, and the new timeline persists.
    const { volume } = await mgr.openVolume('tank/v');
    await volume.write(0, Buffer.alloc(16384, 'C'));
    await volume.flush();
    await mgr.close();
    const again = await block0(home);
    expect(again.text).toBe('C');
    await again.mgr.close();
  });

  it('a torn newest slot in some labels still imports the newest txg from the others', async () => {
    const { home, device, T } = await twoVersions();
    const size = (await import('node:fs')).statSync(device).size;
    const offs = labelOffsets(size);
    for (const off of offs.slice(0, 3)) await patch(device, off + RING + (T % UB_RING) * UB_SLOT + 512, (b) => b.fill(0), 512);
    expect(await newestTxg(device)).toBe(T);
    const { text, mgr } = await block0(home);
    expect(text).toBe('B');
    await mgr.close();
  });
});

describe('labels', () => {
  for (const pair of ['front', 'back'] as const) {
    it(`damage to the ${pair} pair still imports from the other pair`, async () => {
      const { home, device } = await twoVersions();
      const size = (await import('node:fs')).statSync(device).size;
      const at = pair === 'front' ? 0 : size - 2 * LABEL_SIZE;
      await patch(device, at, (b) => b.fill(0x5a), 2 * LABEL_SIZE);
      const { text, mgr } = await block0(home);
      expect(text).toBe('B');
      await mgr.close();
      // The import rewrote the labels: all four are good again.
      const leaf = await FileLeaf.open(device, 'probe', { readOnly: true });
      try {
        for (const off of labelOffsets(size)) {
          const b = await leaf.pread(off, LABEL_SIZE);
          expect(b.readBigUInt64LE(4096), `label at ${off}`).toBe(0x5354524154414c31n);
        }
      } finally {
        await leaf.close();
      }
    });
  }

  it('all four labels destroyed: not a pool any more (clear error, no crash)', async () => {
    const { home, device } = await twoVersions();
    const size = (await import('node:fs')).statSync(device).size;
    for (const off of labelOffsets(size)) await patch(device, off, (b) => b.fill(0), LABEL_SIZE);
    const mgr = new PoolManager(home);
    await expect(mgr.pool('tank')).rejects.toMatchObject({ code: 'ENXIO' });
    await mgr.close();
  });
});
