/**
 * Write side: everything we write passes `qemu-img check` (no errors, no
 * leaks) and reads back in qemu-img exactly as a mirror buffer says.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, openImage } from '../../../formats/image-format.js';
import { checkImage, Qcow2Image } from '../../../formats/qcow2/index.js';
import type { BlockDevice } from '../../../src/device/block-device.js';
import { pattern, qemuCheck, qemuImg, qemuIo, qemuRaw, rng, tempDir } from './helpers.js';

const t = tempDir('qcow2-write');
afterAll(() => t.cleanup());

/** Random writes, zeroes and trims, mirrored into a buffer. */
async function workload(dev: BlockDevice, mirror: Buffer, seed: number, ops: number, cs: number): Promise<void> {
  const r = rng(seed);
  const size = mirror.length;
  for (let i = 0; i < ops; i++) {
    const kind = r();
    // Mix cluster-aligned runs and unaligned small writes.
    const aligned = r() < 0.5;
    let off = Math.floor(r() * size);
    let len = 1 + Math.floor(r() * Math.min(size / 8, 4 * cs));
    if (aligned) {
      off = Math.floor(off / cs) * cs;
      len = Math.max(cs, Math.floor(len / cs) * cs);
    }
    len = Math.min(len, size - off);
    if (len <= 0) continue;
    if (kind < 0.7) {
      const d = pattern(Math.ceil(len / 4) * 4, seed * 1000 + i).subarray(0, len);
      await dev.write(off, d);
      d.copy(mirror, off);
    } else if (kind < 0.85) {
      await dev.writeZeroes(off, len, { mayTrim: r() < 0.5 });
      mirror.fill(0, off, off + len);
    } else {
      await dev.trim(off, len);
      mirror.fill(0, off, off + len);
    }
    if (i % 17 === 0) await dev.flush();
  }
}

function expectClean(file: string): void {
  const c = qemuCheck(file);
  expect(c['check-errors']).toBe(0);
  expect(c.corruptions ?? 0).toBe(0);
  expect(c.leaks ?? 0).toBe(0);
  expect(c.status).toBe(0);
}

describe('qcow2 writes pass qemu-img check and compare', () => {
  const cases: Array<[string, Parameters<typeof createImage>[1]]> = [
    ['v3 64k', { format: 'qcow2', size: 8 << 20 }],
    ['v2 64k', { format: 'qcow2', size: 8 << 20, compat: '0.10' }],
    ['v3 512 refcount_bits=1 (refcount table growth)', { format: 'qcow2', size: 3 << 20, clusterSize: 512, refcountBits: 1 }],
    ['v3 4k refcount_bits=64', { format: 'qcow2', size: 4 << 20, clusterSize: 4096, refcountBits: 64 }],
    ['extended_l2 32k', { format: 'qcow2', size: 8 << 20, clusterSize: 32768, extendedL2: true }],
    ['2M clusters refcount 4', { format: 'qcow2', size: 12 << 20, clusterSize: 2 << 20, refcountBits: 4 }],
  ];
  for (const [name, opts] of cases) {
    it(name, async () => {
      const f = join(t.dir, `${name.replace(/\W+/g, '_')}.qcow2`);
      const dev = await createImage(f, opts);
      const mirror = Buffer.alloc(opts.size);
      await workload(dev, mirror, name.length, 150, opts.clusterSize ?? 65536);
      await dev.close();
      expectClean(f);
      expect(qemuRaw(f, t.dir).equals(mirror)).toBe(true);
      // And we read back our own writes after reopening.
      const again = await openImage(f, { readOnly: true });
      const back = await again.read(0, opts.size);
      await again.close();
      expect(back.equals(mirror)).toBe(true);
    });
  }

  it('writes into a qemu image with an internal snapshot copy on write; the snapshot stays intact', async () => {
    const f = join(t.dir, 'cow-snap.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', f, '2M');
    qemuIo(f, ['write -P 0x10 0 1M', 'write -z 1M 64k']);
    const before = qemuRaw(f, t.dir);
    qemuImg('snapshot', '-c', 'base', f);
    const dev = await Qcow2Image.open(f);
    const mirror = Buffer.from(before);
    await workload(dev, mirror, 7, 120, 4096);
    await dev.close();
    expectClean(f);
    expect(qemuRaw(f, t.dir).equals(mirror)).toBe(true);
    expect(qemuRaw(f, t.dir, 'qcow2', ['-l', 'snapshot.name=base']).equals(before)).toBe(true);
  });

  it('writes over compressed clusters and into an overlay copy from the backing chain', async () => {
    const raw = join(t.dir, 'src.raw');
    qemuImg('create', '-f', 'raw', raw, '2M');
    qemuIo(raw, ['write -P 0x3c 0 2M'], 'raw');
    const base = join(t.dir, 'comp-base.qcow2');
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd,cluster_size=16384', raw, base);
    const top = join(t.dir, 'overlay.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=65536', '-b', 'comp-base.qcow2', '-F', 'qcow2', top, '3M');
    const mirror = Buffer.alloc(3 << 20);
    qemuRaw(top, t.dir).copy(mirror);
    const dev = await openImage(top);
    await workload(dev, mirror, 11, 100, 65536);
    await dev.close();
    expectClean(top);
    expectClean(base);
    expect(qemuRaw(top, t.dir).equals(mirror)).toBe(true);
    // Writing straight into the compressed image: COW out of compressed clusters.
    const b = await Qcow2Image.open(base);
    const m2 = qemuRaw(base, t.dir);
    await workload(b, m2, 12, 60, 16384);
    await b.close();
    expectClean(base);
    expect(qemuRaw(base, t.dir).equals(m2)).toBe(true);
  });

  it('compressed writes (zlib and zstd) are readable by qemu', async () => {
    for (const ct of ['zlib', 'zstd'] as const) {
      const f = join(t.dir, `cw-${ct}.qcow2`);
      const dev = (await createImage(f, { format: 'qcow2', size: 4 << 20, compressionType: ct })) as Qcow2Image;
      const data = Buffer.alloc(4 << 20);
      for (let i = 0; i < data.length; i += 4096) data.fill(i % 251, i, i + 4096);
      pattern(65536, 5).copy(data, 1 << 20); // incompressible cluster: stored plainly
      await dev.writeCompressed(0, data);
      await dev.close();
      expectClean(f);
      expect(qemuRaw(f, t.dir).equals(data)).toBe(true);
      const info = JSON.parse(qemuImg('info', '--output=json', f)) as { 'format-specific': { data: { 'compression-type': string } } };
      expect(info['format-specific'].data['compression-type']).toBe(ct);
    }
  });

  it('an image with persistent bitmaps: check counts them; writing drops them without leaks', async () => {
    const f = join(t.dir, 'bitmaps.qcow2');
    qemuImg('create', '-f', 'qcow2', f, '4M');
    qemuIo(f, ['write -P 1 0 1M']);
    qemuImg('bitmap', '--add', f, 'b0');
    qemuImg('bitmap', '--add', '-g', '65536', f, 'b1');
    qemuIo(f, ['write -P 2 0 64k']);
    const ro = await Qcow2Image.open(f, { readOnly: true });
    const r = await ro.exclusive(() => checkImage(ro));
    await ro.close();
    expect(r.corruptions + r.leaks).toBe(0);
    const mirror = qemuRaw(f, t.dir);
    const dev = await Qcow2Image.open(f);
    await workload(dev, mirror, 21, 40, 65536);
    await dev.close();
    expectClean(f);
    expect(qemuRaw(f, t.dir).equals(mirror)).toBe(true);
  });
});
