import { open } from 'node:fs/promises';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileLeaf } from '../../../src/pool/vdev/leaf-file.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';
import { LEAF_DATA_START, LEAF_TAIL_RESERVE, SECTOR } from '../../../src/pool/vdev/types.js';
import { makeFiles, MiB, randomBlock, tempDir, verifierFor } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

async function single(path: string, asize?: number): Promise<SingleVdev> {
  const leaf = await FileLeaf.open(path, '42');
  return new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: '42', path, ...(asize ? { asize } : {}) } });
}

describe('SingleVdev', () => {
  it('maps offset X to leaf offset 4 MiB + X and reports capacity', async () => {
    const [p] = await makeFiles(dir, 1, 100 * MiB);
    const v = await single(p!);
    expect(v.capacity).toBe(100 * MiB - LEAF_DATA_START - LEAF_TAIL_RESERVE);
    expect(v.asize(1)).toBe(SECTOR);
    expect(v.asize(SECTOR * 3)).toBe(SECTOR * 3);
    const data = randomBlock(4);
    await v.write(8 * SECTOR, data);
    await v.flush();
    const fh = await open(p!, 'r');
    const raw = Buffer.alloc(data.length);
    await fh.read(raw, 0, raw.length, LEAF_DATA_START + 8 * SECTOR);
    await fh.close();
    expect(raw.equals(data)).toBe(true);
    expect((await v.read(8 * SECTOR, data.length, verifierFor(data))).equals(data)).toBe(true);
    expect(v.config()).toMatchObject({ type: 'file', guid: '42', path: p, id: 0, asize: v.capacity });
    await v.close();
  });

  it('a corrupted block is EIO and counted as a CKSUM error on the leaf', async () => {
    const [p] = await makeFiles(dir, 1);
    const v = await single(p!);
    const data = randomBlock(2);
    await v.write(0, data);
    const fh = await open(p!, 'r+');
    await fh.write(Buffer.from([0xde, 0xad]), 0, 2, LEAF_DATA_START + 100);
    await fh.close();
    await expect(v.read(0, data.length, verifierFor(data))).rejects.toMatchObject({ code: 'EIO' });
    expect(v.leaf.errors).toEqual({ read: 0, write: 0, cksum: 1 });
    await v.close();
  });

  it('rejects misaligned or out-of-range I/O', async () => {
    const [p] = await makeFiles(dir, 1);
    const v = await single(p!);
    await expect(v.write(100, randomBlock(1))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(v.write(v.capacity, randomBlock(1))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(v.read(0, 100, () => true)).rejects.toMatchObject({ code: 'EINVAL' });
    await v.close();
  });

  it('keeps the recorded asize; a device smaller than it is UNAVAIL', async () => {
    const [p, q] = await makeFiles(dir, 2, 100 * MiB);
    const v = await single(p!, 64 * MiB);
    expect(v.capacity).toBe(64 * MiB);
    expect(v.state()).toBe('ONLINE');
    await v.close();
    const w = await single(q!, 200 * MiB);
    expect(w.state()).toBe('UNAVAIL');
    await expect(w.write(0, randomBlock(1))).rejects.toMatchObject({ code: 'EIO' });
    await w.close();
  });
});
