/**
 * RawDevice served over NBD: qemu-img convert/compare into a sparse raw
 * file, nbdinfo --map distinguishing unwritten (hole), trimmed (hole) and
 * zeroed (zero, allocated) ranges, and fio with ioengine=nbd verifying
 * crc32c across the NBD path.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawDevice } from '../../formats/raw/index.js';
import { ok, pattern, run, serve, tempDir, type Served } from './helpers.js';

const MiB = 1024 * 1024;

describe('NbdServer over RawDevice', () => {
  let s: Served;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let disk: RawDevice;
  let fioDev: RawDevice;
  let file: string;

  beforeAll(async () => {
    tmp = await tempDir('nbd-raw');
    file = path.join(tmp.dir, 'disk.raw');
    disk = await RawDevice.create(file, 64 * MiB);
    fioDev = await RawDevice.create(path.join(tmp.dir, 'fio.raw'), 64 * MiB);
    s = await serve({ exports: { disk: { device: disk }, fio: { device: fioDev } } });
  });
  afterAll(async () => {
    await s.server.close();
    await disk.close();
    await fioDev.close();
    await tmp.cleanup();
  });

  it('qemu-img convert writes a sparse source faithfully and compare agrees', async () => {
    const src = path.join(tmp.dir, 'src.raw');
    const img = Buffer.alloc(64 * MiB);
    pattern(4 * MiB, 11).copy(img, 0);
    pattern(MiB, 12).copy(img, 40 * MiB);
    await writeFile(src, img);
    await ok('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri('disk')]);
    await ok('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri('disk')]);
    await disk.flush();
    expect((await readFile(file)).equals(img)).toBe(true);
    // Zero ranges were not written as data: the file stays sparse.
    expect((await stat(file)).blocks * 512).toBeLessThan(16 * MiB);
  });

  it('nbdinfo --map: unwritten and trimmed ranges are holes, NO_HOLE zeroes are zero, data is never zero', async () => {
    await ok('qemu-io', ['-f', 'raw', '-c', 'discard 1M 2M', '-c', 'write -z 40M 1M', '-c', 'flush', s.uri('disk')]);
    const map = JSON.parse(await ok('nbdinfo', ['--map', '--json', s.uri('disk')])) as { offset: number; length: number; type: number }[];
    const at = (off: number) => map.find((m) => m.offset <= off && off < m.offset + m.length)!.type;
    expect(at(0)).toBe(0); // data
    expect(at(1 * MiB)).toBe(3); // trimmed: hole,zero
    expect(at(3 * MiB)).toBe(0); // data again
    expect(at(20 * MiB)).toBe(3); // never written
    expect(at(40 * MiB)).toBe(2); // zeroed without punching: zero, allocated
    expect(at(41 * MiB)).toBe(3);
    // Everything reported zero reads as zero; everything reported data is what was written.
    for (const m of map) {
      if (m.type & 2) expect((await disk.read(m.offset, Math.min(m.length, 4 * MiB))).every((b) => b === 0)).toBe(true);
    }
    await ok('qemu-io', ['-f', 'raw', '-c', 'read -P 0 1M 2M', '-c', 'read -P 0 40M 1M', s.uri('disk')]);
  });

  it('fio ioengine=nbd with verify=crc32c passes', async () => {
    const r = await run('fio', [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${s.uri('fio')}`,
      '--rw=randwrite',
      '--bs=4k',
      '--bssplit=4k/50:64k/30:1m/20',
      '--iodepth=16',
      '--size=32M',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0', // no state files in the working directory
      '--output-format=json',
    ], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0]; // fio prints a line before the JSON
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBeGreaterThanOrEqual(32 * MiB);
    expect(job.read.io_bytes).toBeGreaterThan(0); // the verify pass read everything back
  });

  it('fio verify catches corruption (the check can fail)', async () => {
    // Write with one seed, verify against another: fio must report a mismatch.
    const common = ['--ioengine=nbd', `--uri=${s.uri('fio')}`, '--bs=64k', '--size=4M', '--verify=crc32c', '--verify_fatal=1', '--verify_state_save=0', '--output-format=json'];
    await ok('fio', ['--name=w', '--rw=write', '--do_verify=0', '--randseed=1', ...common]);
    await fioDev.write(MiB, Buffer.alloc(4096, 0xff)); // corrupt behind the client's back
    const r = await run('fio', ['--name=w', '--rw=read', '--verify_only=1', '--randseed=1', ...common]);
    expect(r.code).not.toBe(0);
  });
});
