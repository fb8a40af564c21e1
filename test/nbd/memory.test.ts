/**
 * The library used alone: an NbdServer over in-memory devices, driven by
 * qemu-img, qemu-io, nbdinfo and nbdcopy.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { ok, pattern, run, serve, tempDir, type Served } from './helpers.js';

const MiB = 1024 * 1024;

describe('NbdServer over MemoryDevice', () => {
  let s: Served;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const disk = new MemoryDevice(64 * MiB);
  const snap = new MemoryDevice(16 * MiB);

  beforeAll(async () => {
    tmp = await tempDir('nbd-mem');
    await snap.write(0, Buffer.alloc(MiB, 0x5a));
    s = await serve({
      exports: {
        'tank/vm1': { device: disk, description: 'first test volume' },
        'tank/vm1@mon': { device: snap, description: 'a snapshot', readOnly: true },
      },
    });
  });
  afterAll(async () => {
    await s.server.close();
    await tmp.cleanup();
  });

  it('qemu-img info reports the size', async () => {
    const out = JSON.parse(await ok('qemu-img', ['info', '--output=json', s.uri('tank/vm1')]));
    expect(out['virtual-size']).toBe(64 * MiB);
  });

  it('nbdinfo --list shows every export with its description', async () => {
    const out = JSON.parse(await ok('nbdinfo', ['--list', '--json', s.uri('')]));
    const byName = Object.fromEntries(out.exports.map((e: { 'export-name': string }) => [e['export-name'], e]));
    expect(Object.keys(byName).sort()).toEqual(['tank/vm1', 'tank/vm1@mon']);
    expect(byName['tank/vm1'].description).toBe('first test volume');
    expect(byName['tank/vm1@mon'].is_read_only).toBe(true);
  });

  it('advertises truthful flags and block sizes', async () => {
    const out = JSON.parse(await ok('nbdinfo', ['--json', s.uri('tank/vm1')]));
    const e = out.exports[0];
    expect(out.protocol).toBe('newstyle-fixed');
    expect(out.TLS).toBe(false);
    expect(e['export-size']).toBe(64 * MiB);
    expect(e.is_read_only).toBe(false);
    for (const f of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_multi_conn', 'can_cache', 'can_df']) {
      expect(e[f], f).toBe(true);
    }
    expect(e.block_size_minimum).toBe(1);
    expect(e.block_size_preferred).toBe(4096);
    expect(e.block_size_maximum).toBe(32 * MiB);
    const ro = JSON.parse(await ok('nbdinfo', ['--json', s.uri('tank/vm1@mon')])).exports[0];
    expect(ro.is_read_only).toBe(true);
    expect(ro.can_trim).toBe(false);
    expect(ro.can_zero).toBe(false);
  });

  it('qemu-io writes, reads back patterns, zeroes, discards and flushes', async () => {
    const out = await ok('qemu-io', [
      '-f', 'raw',
      '-c', 'write -P 0xab 0 1M',
      '-c', 'write -P 0xcd 1M 64k',
      '-c', 'write -P 0x11 3M 1M',
      '-c', 'write -z 3M 512k',
      '-c', 'write -P 0x22 5M 1M',
      '-c', 'discard 5M 1M',
      '-c', 'flush',
      '-c', 'read -P 0xab 0 1M',
      '-c', 'read -P 0xcd 1M 64k',
      '-c', 'read -P 0 3M 512k',
      '-c', 'read -P 0x11 3584k 512k',
      '-c', 'read -P 0 5M 1M',
      s.uri('tank/vm1'),
    ]);
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    // What the client wrote is what the device holds.
    expect((await disk.read(0, MiB)).equals(Buffer.alloc(MiB, 0xab))).toBe(true);
    expect((await disk.read(3 * MiB + 512 * 1024, 512 * 1024)).equals(Buffer.alloc(512 * 1024, 0x11))).toBe(true);
  });

  it('a wrong pattern is detected (the check above can fail)', async () => {
    const r = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xee 0 4k', s.uri('tank/vm1')]);
    expect(r.stdout + r.stderr).toMatch(/Pattern verification failed/);
  });

  it('nbdinfo --map reports holes for unwritten and trimmed ranges, never zero for data', async () => {
    const map = JSON.parse(await ok('nbdinfo', ['--map', '--json', s.uri('tank/vm1')])) as { offset: number; length: number; type: number }[];
    const at = (off: number) => map.find((m) => m.offset <= off && off < m.offset + m.length)!;
    expect(at(0).type).toBe(0); // data
    expect(at(1 * MiB).type).toBe(0);
    expect(at(2 * MiB).type).toBe(3); // never written: hole,zero
    expect(at(5 * MiB).type).toBe(3); // discarded
    expect(at(60 * MiB).type).toBe(3);
    for (const m of map) if (m.type & 2) expect((await disk.read(m.offset, Math.min(m.length, MiB))).every((b) => b === 0)).toBe(true);
  });

  it('qemu-img convert copies in and out, and compare agrees', async () => {
    const src = path.join(tmp.dir, 'src.raw');
    const data = Buffer.concat([pattern(3 * MiB, 7), Buffer.alloc(2 * MiB), pattern(MiB, 9)]);
    const img = Buffer.alloc(64 * MiB);
    data.copy(img, 8 * MiB);
    await writeFile(src, img);
    await ok('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri('tank/vm1')]);
    await ok('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri('tank/vm1')]);
    const back = path.join(tmp.dir, 'back.raw');
    await ok('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri('tank/vm1'), back]);
    expect((await readFile(back)).equals(img)).toBe(true);
    // compare must be able to fail: change one byte behind qemu's back.
    await disk.write(9 * MiB, Buffer.from([0x42]));
    const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri('tank/vm1')]);
    expect(r.code).toBe(1);
  });

  it('nbdcopy with 4 connections round-trips the disk', async () => {
    const out = path.join(tmp.dir, 'nbdcopy.raw');
    const img = Buffer.alloc(64 * MiB);
    pattern(20 * MiB, 3).copy(img, 30 * MiB);
    const src = path.join(tmp.dir, 'nbdcopy-src.raw');
    await writeFile(src, img);
    await ok('nbdcopy', ['--connections=4', '--flush', src, s.uri('tank/vm1')]);
    await ok('nbdcopy', ['--connections=4', s.uri('tank/vm1'), out]);
    expect((await readFile(out)).equals(img)).toBe(true);
    expect((await disk.read(30 * MiB, 20 * MiB)).equals(pattern(20 * MiB, 3))).toBe(true);
  });

  it('a read-only export serves its data and refuses writes with EPERM', async () => {
    await ok('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x5a 0 1M', '-c', 'read -P 0 1M 1M', s.uri('tank/vm1@mon')]);
    const py = await run('/usr/bin/python3', [
      '-c',
      `import nbd
h = nbd.NBD()
h.set_strict_mode(0)  # let the request reach the server instead of libnbd refusing it
h.connect_uri("${s.uri('tank/vm1@mon')}")
try:
    h.pwrite(b"x" * 512, 0)
    print("WROTE")
except nbd.Error as e:
    print("errno", e.errno)
`,
    ]);
    expect(py.stdout.trim()).toBe('errno EPERM');
    expect((await snap.read(0, 4)).equals(Buffer.alloc(4, 0x5a))).toBe(true);
  });

  it('unknown export names are refused', async () => {
    const r = await run('qemu-img', ['info', s.uri('tank/nope')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no export named|not available|unknown/i);
  });

  it('counts ops, bytes and errors per export', () => {
    const st = s.server.stats();
    expect(st['tank/vm1']!.byOp.write.ops).toBeGreaterThan(0);
    expect(st['tank/vm1']!.bytesWritten).toBeGreaterThan(20 * MiB);
    expect(st['tank/vm1']!.bytesRead).toBeGreaterThan(20 * MiB);
    expect(st['tank/vm1@mon']!.byOp.write.errors).toBeGreaterThan(0);
    const h = st['tank/vm1']!.byOp.write.latencyUs;
    expect(h.reduce((a, b) => a + b, 0)).toBe(st['tank/vm1']!.byOp.write.ops);
  });
});
