import { existsSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checked } from '../../../src/device/validate.js';
import { StorageError } from '../../../src/errors.js';
import { FALLOCATE_MIN, GRAIN, RawDevice } from '../../../formats/raw/index.js';

const MiB = 1024 * 1024;

describe('RawDevice', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-raw-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('creates a sparse image that reads as zeroes and reports one hole', async () => {
    const p = path.join(dir, 'a.raw');
    const d = await RawDevice.create(p, 8 * MiB);
    expect(d.info().size).toBe(8 * MiB);
    expect((await stat(p)).blocks).toBe(0);
    expect((await d.read(MiB, 4096)).every((b) => b === 0)).toBe(true);
    expect(await d.blockStatus(0, 8 * MiB)).toEqual([{ offset: 0, length: 8 * MiB, hole: true, zero: true }]);
    await d.close();
    await expect(RawDevice.create(p, MiB)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('writes and reads back at arbitrary offsets; written grains are data', async () => {
    const d = await RawDevice.create(path.join(dir, 'b.raw'), 8 * MiB);
    const data = Buffer.from('strata raw device '.repeat(1000));
    await d.write(3 * MiB + 7, data, { fua: true });
    expect((await d.read(3 * MiB + 7, data.length)).equals(data)).toBe(true);
    const into = Buffer.alloc(data.length + 10, 0xff);
    const got = await d.read(3 * MiB + 7, data.length, into);
    expect(got.buffer).toBe(into.buffer);
    const ext = await d.blockStatus(0, 8 * MiB);
    const g0 = Math.floor((3 * MiB + 7) / GRAIN) * GRAIN;
    expect(ext.find((e) => e.offset <= g0 && g0 < e.offset + e.length)).toMatchObject({ hole: false, zero: false });
    expect(ext[0]).toMatchObject({ offset: 0, hole: true, zero: true });
    await d.flush();
    await d.close();
  });

  it('trim punches a hole (the file loses blocks) and reads back zeroes', async () => {
    const p = path.join(dir, 'c.raw');
    await writeFile(p, Buffer.alloc(4 * MiB, 0x77));
    const d = await RawDevice.open(p);
    expect(await d.blockStatus(0, 4 * MiB)).toEqual([{ offset: 0, length: 4 * MiB, hole: false, zero: false }]);
    const before = (await stat(p)).blocks;
    await d.trim(MiB, 2 * MiB);
    expect((await stat(p)).blocks).toBeLessThan(before);
    expect((await d.read(MiB, 2 * MiB)).every((b) => b === 0)).toBe(true);
    expect((await d.read(0, MiB)).every((b) => b === 0x77)).toBe(true);
    expect(await d.blockStatus(0, 4 * MiB)).toEqual([
      { offset: 0, length: MiB, hole: false, zero: false },
      { offset: MiB, length: 2 * MiB, hole: true, zero: true },
      { offset: 3 * MiB, length: MiB, hole: false, zero: false },
    ]);
    await d.close();
  });

  it('write zeroes with NO_HOLE keeps the range allocated (zero, not hole)', async () => {
    const p = path.join(dir, 'd.raw');
    await writeFile(p, Buffer.alloc(2 * MiB, 0x33));
    const d = await RawDevice.open(p);
    const before = (await stat(p)).blocks;
    await d.writeZeroes(0, MiB, { mayTrim: false });
    expect((await stat(p)).blocks).toBe(before);
    expect((await d.read(0, MiB)).every((b) => b === 0)).toBe(true);
    expect((await d.blockStatus(0, MiB))[0]).toEqual({ offset: 0, length: MiB, hole: false, zero: true });
    // A later write turns the grain back into data.
    await d.write(4096, Buffer.alloc(512, 1));
    expect((await d.blockStatus(0, GRAIN))[0]).toMatchObject({ hole: false, zero: false });
    await d.close();
  });

  it('fast zero fails with ENOTSUP when it would mean writing zeroes', async () => {
    const d = await RawDevice.create(path.join(dir, 'e.raw'), 4 * MiB);
    await d.write(0, Buffer.alloc(8192, 9));
    await expect(d.writeZeroes(0, 4096, { fastZero: true })).rejects.toMatchObject({ code: 'ENOTSUP' });
    expect((await d.read(0, 4096)).every((b) => b === 9)).toBe(true); // unchanged
    await d.writeZeroes(0, FALLOCATE_MIN, { fastZero: true, mayTrim: true });
    expect((await d.read(0, 8192)).every((b) => b === 0)).toBe(true);
    await d.close();
  });

  it('small zero ranges are written as zeroes', async () => {
    const d = await RawDevice.create(path.join(dir, 'f.raw'), MiB);
    await d.write(0, Buffer.alloc(MiB, 5));
    await d.writeZeroes(100, 1000, { mayTrim: true });
    const b = await d.read(0, 2000);
    expect(b.subarray(0, 100).every((x) => x === 5)).toBe(true);
    expect(b.subarray(100, 1100).every((x) => x === 0)).toBe(true);
    expect(b.subarray(1100).every((x) => x === 5)).toBe(true);
    await d.close();
  });

  it('opened read-only, writes are refused through checked()', async () => {
    const p = path.join(dir, 'g.raw');
    await writeFile(p, Buffer.alloc(MiB, 1));
    const d = checked(await RawDevice.open(p, { readOnly: true }));
    expect(d.info().readOnly).toBe(true);
    await expect(d.write(0, Buffer.alloc(512))).rejects.toBeInstanceOf(StorageError);
    await expect(d.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EPERM' });
    await expect(d.read(MiB - 10, 20)).rejects.toMatchObject({ code: 'EINVAL' });
    expect((await d.read(0, 4)).equals(Buffer.alloc(4, 1))).toBe(true);
    await d.close();
  });

  it('reports missing files and non-files as storage errors', async () => {
    await expect(RawDevice.open(path.join(dir, 'missing.raw'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(RawDevice.open(dir)).rejects.toMatchObject({ code: 'ENOTSUP' });
  });

  it('inline small I/O (auto on tmpfs, or forced) reads and writes the same bytes', async () => {
    const dirs = [dir, ...(existsSync('/dev/shm') ? ['/dev/shm'] : [])];
    for (const d of dirs) {
      const p = path.join(d, `strata-inline-${process.pid}.raw`);
      try {
        for (const mode of ['auto', 'always', 'never'] as const) {
          const dev = await RawDevice.create(p, 4 * MiB, { overwrite: true, inlineIo: mode });
          if (mode === 'always') expect(dev.inline).toBe(true);
          if (mode === 'never') expect(dev.inline).toBe(false);
          if (mode === 'auto' && d === '/dev/shm') expect(dev.inline).toBe(true);
          for (const [off, len] of [[1, 1024], [4096, 65536], [MiB - 3, MiB + 5]] as const) {
            const data = Buffer.alloc(len, (off + len) & 0xff);
            await dev.write(off, data);
            expect((await dev.read(off, len)).equals(data), `${d} ${mode} ${off}+${len}`).toBe(true);
          }
          await dev.writeZeroes(4096, 4096);
          expect((await dev.read(4096, 4096)).every((b) => b === 0)).toBe(true);
          await dev.close();
        }
      } finally {
        await rm(p, { force: true });
      }
    }
  });

  it('a closed device fails with ESHUTDOWN', async () => {
    const d = await RawDevice.create(path.join(dir, 'h.raw'), MiB);
    await d.close();
    await expect(d.read(0, 1)).rejects.toMatchObject({ code: 'ESHUTDOWN' });
  });
});
