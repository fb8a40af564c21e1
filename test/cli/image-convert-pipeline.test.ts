/**
 * `strata image convert` internals: the data map of a sparse raw file
 * (SEEK_DATA/SEEK_HOLE through perl), the view that reports it as block
 * status, and the copy pipeline (order of writes, zero detection, errors).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RawDevice } from '../../formats/raw/index.js';
import { convertCommand, copySparse } from '../../src/cli/image/convert.js';
import { dataExtents, KnownExtents } from '../../src/cli/image/file-extents.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { pattern, qemuCheck, qemuImgStatus, tempDir } from '../formats/qcow2/helpers.js';

const t = tempDir('convert-pipeline');
afterAll(() => t.cleanup());

const MIB = 1024 * 1024;
// perl-base is part of every Debian/Ubuntu system; elsewhere dataExtents answers "unknown".
const hasPerl = spawnSync('perl', ['-e', '0']).status === 0;

/** A sparse file: data at [1M, 3M), [8M, 8M+4k) and the last 64k of 16M. */
function sparseFile(name: string): string {
  const f = join(t.dir, name);
  const fd = openSync(f, 'w');
  ftruncateSync(fd, 16 * MIB);
  writeSync(fd, pattern(2 * MIB, 1), 0, 2 * MIB, MIB);
  writeSync(fd, pattern(4096, 2), 0, 4096, 8 * MIB);
  writeSync(fd, pattern(65536, 3), 0, 65536, 16 * MIB - 65536);
  closeSync(fd);
  return f;
}

describe('convert: data map of a sparse raw source', () => {
  it.skipIf(!hasPerl)('dataExtents finds the data ranges (file-system granularity) and nothing else', async () => {
    const f = sparseFile('sparse.raw');
    const ext = await dataExtents(f);
    expect(ext).not.toBeNull();
    const covered = (a: number, z: number) => ext!.some(([s, e]) => s <= a && z <= e);
    expect(covered(MIB, 3 * MIB)).toBe(true);
    expect(covered(8 * MIB, 8 * MIB + 4096)).toBe(true);
    expect(covered(16 * MIB - 65536, 16 * MIB)).toBe(true);
    // Holes are reported (whatever the file system's block size, most of the file is a hole).
    const total = ext!.reduce((n, [a, z]) => n + z - a, 0);
    expect(total).toBeLessThan(4 * MIB);
    for (let i = 1; i < ext!.length; i++) expect(ext![i]![0]).toBeGreaterThanOrEqual(ext![i - 1]![1]);
  });

  it('a fully allocated file is one range without running anything', async () => {
    const f = join(t.dir, 'full.raw');
    const fd = openSync(f, 'w');
    writeSync(fd, pattern(MIB, 4));
    closeSync(fd);
    expect(await dataExtents(f)).toEqual([[0, MIB]]);
    expect(await dataExtents(join(t.dir, 'missing.raw'))).toBeNull();
  });

  it('KnownExtents reports holes as zero and data as data, for any window', async () => {
    const dev = new MemoryDevice(16 * MIB);
    const v = new KnownExtents(dev, [
      [MIB, 3 * MIB],
      [8 * MIB, 8 * MIB + 4096],
    ]);
    expect(await v.blockStatus(0, 16 * MIB)).toEqual([
      { offset: 0, length: MIB, hole: true, zero: true },
      { offset: MIB, length: 2 * MIB, hole: false, zero: false },
      { offset: 3 * MIB, length: 5 * MIB, hole: true, zero: true },
      { offset: 8 * MIB, length: 4096, hole: false, zero: false },
      { offset: 8 * MIB + 4096, length: 8 * MIB - 4096, hole: true, zero: true },
    ]);
    expect(await v.blockStatus(2 * MIB, MIB)).toEqual([{ offset: 2 * MIB, length: MIB, hole: false, zero: false }]);
    expect(await v.blockStatus(2 * MIB, 2 * MIB)).toEqual([
      { offset: 2 * MIB, length: MIB, hole: false, zero: false },
      { offset: 3 * MIB, length: MIB, hole: true, zero: true },
    ]);
    expect(await v.blockStatus(4 * MIB, 4096)).toEqual([{ offset: 4 * MIB, length: 4096, hole: true, zero: true }]);
  });
});

describe('convert: copy pipeline', () => {
  it('copies exactly, writes only non-zero granules, in guest order', async () => {
    const f = sparseFile('pipe.raw');
    const raw = await RawDevice.open(f, { readOnly: true });
    const src = new KnownExtents(raw, (await dataExtents(f))!);
    const dst = new MemoryDevice(16 * MIB);
    const writes: Array<[number, number]> = [];
    const write = dst.write.bind(dst);
    dst.write = (off: number, data: Buffer) => {
      writes.push([off, data.length]);
      return write(off, data);
    };
    await copySparse(src, dst, { granule: 65536 });
    const want = await raw.read(0, 16 * MIB);
    expect((await dst.read(0, 16 * MIB)).equals(want)).toBe(true);
    await raw.close();
    for (let i = 1; i < writes.length; i++) expect(writes[i]![0]).toBeGreaterThanOrEqual(writes[i - 1]![0] + writes[i - 1]![1]);
    const written = writes.reduce((n, [, l]) => n + l, 0);
    expect(written).toBe(2 * MIB + 65536 + 65536); // the 4k write rounds up to one 64k granule
  });

  it('a failing write fails the copy (no hang, no unhandled rejection)', async () => {
    const src = new MemoryDevice(64 * MIB);
    await src.write(0, pattern(64 * MIB, 5));
    const dst = new MemoryDevice(64 * MIB);
    let n = 0;
    dst.write = async () => {
      if (++n === 5) throw new Error('injected write error');
    };
    await expect(copySparse(src, dst, { granule: 65536 })).rejects.toThrow('injected write error');
  });
});

describe.skipIf(!existsSync('/dev/shm'))('convert on a memory file system (synchronous qcow2 I/O, write-behind)', () => {
  it('raw -> qcow2 -> raw round trip, clean and identical, for several cluster sizes', async () => {
    const dir = mkdtempSync('/dev/shm/strata-convert-');
    try {
      const src = join(dir, 'src.raw');
      const fd = openSync(src, 'w');
      ftruncateSync(fd, 24 * MIB);
      writeSync(fd, pattern(3 * MIB + 4096, 7), 0, 3 * MIB + 4096, MIB - 4096);
      writeSync(fd, pattern(65536, 8), 0, 65536, 20 * MIB + 512);
      closeSync(fd);
      for (const opts of [[], ['cluster_size=4096'], ['extended_l2=on'], ['cluster_size=2M']]) {
        const q = join(dir, 'out.qcow2');
        const back = join(dir, 'back.raw');
        await convertCommand(src, q, { format: 'raw', outputFormat: 'qcow2', options: opts });
        const c = qemuCheck(q);
        expect(c.status).toBe(0);
        expect(c.leaks ?? 0).toBe(0);
        expect(qemuImgStatus('compare', '-f', 'raw', '-F', 'qcow2', src, q).status).toBe(0);
        await convertCommand(q, back, { format: 'qcow2', outputFormat: 'raw', cache: 'unsafe' });
        expect(qemuImgStatus('compare', '-f', 'raw', '-F', 'raw', src, back).status).toBe(0);
        rmSync(q);
        rmSync(back);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
