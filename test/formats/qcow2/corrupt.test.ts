/**
 * Corrupt and unsupported inputs, crafted by patching valid images: one
 * clear line on stderr, a non-zero exit, and bounded time and memory (the
 * CLI runs with a 192 MiB heap cap and a time limit).
 */
import { closeSync, copyFileSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProject, qemuCheck, qemuImg, qemuIo, strata, tempDir } from './helpers.js';

const t = tempDir('qcow2-corrupt');
let build: ReturnType<typeof buildProject>;
let good: string;
beforeAll(() => {
  build = buildProject('corrupt');
  good = join(t.dir, 'good.qcow2');
  qemuImg('create', '-f', 'qcow2', good, '16M');
  qemuIo(good, ['write -P 7 0 256k', 'write -P 8 8M 64k']);
});
afterAll(() => {
  build?.cleanup();
  t.cleanup();
});

function patched(name: string, patches: Array<[number, Buffer]>): string {
  const f = join(t.dir, name);
  copyFileSync(good, f);
  const fd = openSync(f, 'r+');
  for (const [off, b] of patches) writeSync(fd, b, 0, b.length, off);
  closeSync(fd);
  return f;
}
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const u64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};

function expectOneLineError(r: { status: number; stderr: string }, re: RegExp): void {
  expect(r.status).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^strata: /);
  expect(lines[0]).toMatch(re);
}

describe('corrupt qcow2 images are refused cleanly', () => {
  const cases: Array<[string, Array<[number, Buffer]>, RegExp]> = [
    ['bad magic', [[0, Buffer.from('QFI\0')]], /bad magic|not a qcow2/],
    ['unknown incompatible feature', [[72, u64(1n << 17n)]], /unsupported incompatible feature.*bit 17/],
    ['L1 table past EOF', [[40, u64(1n << 40n)]], /L1 table is past the end/],
    ['absurd virtual size', [[24, u64(1n << 62n)]], /absurdly large|too small|too large/],
    ['absurd L1 size', [[36, u32(0x7fffffff)]], /L1 table of .* entries is too large/],
    ['absurd refcount table', [[56, u32(0x7fffffff)]], /refcount table/],
    ['cluster_bits out of range', [[20, u32(40)]], /cluster_bits/],
    ['too many snapshots', [[60, u32(0xffffffff)]], /snapshots/],
    ['version 4', [[4, u32(4)]], /version 4/],
    ['encryption', [[32, u32(2)]], /encrypt/],
  ];
  for (const [name, p, re] of cases) {
    it(name, () => {
      const f = patched(`${name.replace(/\W+/g, '_')}.qcow2`, p);
      for (const args of [['info', '-f', 'qcow2', f], ['check', '-f', 'qcow2', f], ['convert', '-f', 'qcow2', '-O', 'raw', f, join(t.dir, 'out.raw')]]) {
        expectOneLineError(strata(build.cli, args), re);
      }
    });
  }

  it('a backing chain loop (a -> b -> a) and a self loop', () => {
    const a = join(t.dir, 'loop-a.qcow2');
    const b = join(t.dir, 'loop-b.qcow2');
    qemuImg('create', '-f', 'qcow2', a, '1M');
    qemuImg('create', '-f', 'qcow2', '-b', a, '-F', 'qcow2', b, '1M');
    qemuImg('rebase', '-u', '-f', 'qcow2', '-b', b, '-F', 'qcow2', a);
    expectOneLineError(strata(build.cli, ['convert', '-O', 'raw', b, join(t.dir, 'x.raw')]), /backing chain loop/);
    expectOneLineError(strata(build.cli, ['info', '--backing-chain', a]), /backing chain loop/);
    const s = join(t.dir, 'self.qcow2');
    qemuImg('create', '-f', 'qcow2', s, '1M');
    qemuImg('rebase', '-u', '-f', 'qcow2', '-b', 'self.qcow2', '-F', 'qcow2', s);
    expectOneLineError(strata(build.cli, ['map', s]), /backing chain loop/);
  });

  it('an L2 entry pointing past the end of the file: check reports corruption (exit 2), reads fail cleanly', () => {
    const f = join(t.dir, 'l2-eof.qcow2');
    copyFileSync(good, f);
    // Find the first L2 table from the L1 and point its first entry far away.
    const info = JSON.parse(strata(build.cli, ['map', '--output=json', f]).stdout.replace(/\n/g, '')) as Array<{ offset?: number }>;
    expect(info[0]!.offset).toBeGreaterThan(0);
    const l1 = Buffer.alloc(8);
    const fd = openSync(f, 'r+');
    const hdr = Buffer.alloc(48);
    readSync(fd, hdr, 0, hdr.length, 0);
    const l1off = Number(hdr.readBigUInt64BE(40));
    readSync(fd, l1, 0, 8, l1off);
    const l2off = Number(l1.readBigUInt64BE(0) & 0x00fffffffffffe00n);
    writeSync(fd, u64((1n << 63n) | (1n << 45n)), 0, 8, l2off);
    closeSync(fd);
    const c = strata(build.cli, ['check', f]);
    expect(c.status).toBe(2);
    expect(qemuCheck(f).status).toBe(2);
    const r = strata(build.cli, ['convert', '-O', 'raw', f, join(t.dir, 'eof.raw')]);
    expect(r.status).toBe(0); // past-EOF data reads as zeroes, as QEMU's file driver does
  });

  it('an L2 entry with a host offset past 2^53: reads refuse it (never the bytes at the file position)', async () => {
    const f = join(t.dir, 'l2-huge.qcow2');
    copyFileSync(good, f);
    const fd = openSync(f, 'r+');
    const hdr = Buffer.alloc(48);
    readSync(fd, hdr, 0, hdr.length, 0);
    const l1 = Buffer.alloc(8);
    readSync(fd, l1, 0, 8, Number(hdr.readBigUInt64BE(40)));
    const l2off = Number(l1.readBigUInt64BE(0) & 0x00fffffffffffe00n);
    // Guest cluster 0 -> host 0x00ffffffffff0000 (aligned, COPIED): past what a JS number holds exactly.
    writeSync(fd, u64((1n << 63n) | 0x00ffffffffff0000n), 0, 8, l2off);
    closeSync(fd);
    const r = strata(build.cli, ['convert', '-O', 'raw', f, join(t.dir, 'huge.raw')]);
    expectOneLineError(r, /data cluster offset .* beyond what an image can hold/);
    const { openImage } = await import('../../../formats/image-format.js');
    const dev = await openImage(f, { readOnly: true });
    try {
      await expect(dev.read(0, 65536)).rejects.toThrow(/beyond what an image can hold/);
      // The batch path too, with the L2 table cached by now.
      await expect(dev.readRanges!([[0, 65536], [131072, 65536]], Buffer.alloc(131072))).rejects.toThrow(/beyond what an image can hold/);
    } finally {
      await dev.close();
    }
  });

  it('an L1 entry or refcount table entry pointing at other metadata is never written through', async () => {
    const { Qcow2Image } = await import('../../../formats/qcow2/index.js');
    const hdr = Buffer.alloc(72);
    const fd = openSync(good, 'r');
    readSync(fd, hdr, 0, 72, 0);
    closeSync(fd);
    const l1off = Number(hdr.readBigUInt64BE(40));
    const rtoff = Number(hdr.readBigUInt64BE(48));
    // L1 entry 0 -> the refcount table, flagged COPIED so it looks writable in place.
    const f1 = patched('l1-reftable.qcow2', [[l1off, u64((1n << 63n) | BigInt(rtoff))]]);
    const a = await Qcow2Image.open(f1);
    await expect(a.write(0, Buffer.alloc(4096, 1))).rejects.toThrow(/points at other metadata/);
    await a.close().catch(() => undefined);
    expect(qemuImg('info', '--output=json', f1)).toMatch(/"virtual-size": 16777216/);
    // Refcount table entry 0 -> the refcount table itself.
    const f2 = patched('rb-reftable.qcow2', [[rtoff, u64(BigInt(rtoff))]]);
    const b = await Qcow2Image.open(f2);
    await expect(b.write(12 << 20, Buffer.alloc(65536, 2))).rejects.toThrow(/refcount table entry 0 .* is invalid/);
    await b.close().catch(() => undefined);
    expect(qemuImg('info', '--output=json', f2)).toMatch(/"virtual-size": 16777216/);
  });
});
