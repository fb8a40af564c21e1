/**
 * Write side: everything we write passes `qemu-img check` (no errors, no
 * leaks) and reads back in qemu-img exactly as a mirror buffer says.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createImage, openImage } from '../../../formats/image-format.js';
import { checkImage, createSnapshot, Qcow2Image } from '../../../formats/qcow2/index.js';
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

  describe('write-behind (convert\'s output): concurrent writes, clean and exact', () => {
    const configs: Array<[string, string, number, number]> = [
      ['64k clusters', 'cluster_size=65536', 16 << 20, 65536],
      ['512 B clusters, refcount_bits=1 (refcount table growth)', 'cluster_size=512,refcount_bits=1', 3 << 20, 512],
      ['extended L2', 'cluster_size=65536,extended_l2=on', 8 << 20, 65536],
    ];
    for (const [name, opts, size, cs] of configs) {
      it(name, async () => {
        const f = join(t.dir, `behind-${cs}-${opts.length}.qcow2`);
        qemuImg('create', '-f', 'qcow2', '-o', opts, f, String(size));
        const dev = await Qcow2Image.open(f, { writeBehind: true });
        const mirror = Buffer.alloc(size);
        const r = rng(size + cs);
        for (let round = 0; round < 40; round++) {
          // A batch of non-overlapping writes in flight at once: fresh runs, overwrites, partial clusters.
          const taken: Array<[number, number]> = [];
          const batch: Array<Promise<void>> = [];
          for (let k = 0; k < 6; k++) {
            let off = Math.floor(r() * size);
            let len = 1 + Math.floor(r() * 8 * cs);
            if (r() < 0.6) {
              off = Math.floor(off / cs) * cs;
              len = Math.ceil(len / cs) * cs;
            }
            len = Math.min(len, size - off);
            if (len <= 0 || taken.some(([a, z]) => off < z && a < off + len)) continue;
            taken.push([off, off + len]);
            const d = pattern(Math.ceil(len / 4) * 4, round * 10 + k).subarray(0, len);
            d.copy(mirror, off);
            batch.push(dev.write(off, d));
          }
          if (round % 7 === 3) {
            // Every other operation waits for the data in flight: zeroes, trim, reads, snapshots.
            const z = Math.floor(r() * size);
            const zl = Math.min(size - z, 3 * cs);
            batch.push(dev.writeZeroes(z, zl, { mayTrim: true }));
            await Promise.all(batch);
            mirror.fill(0, z, z + zl);
          } else await Promise.all(batch);
          // (1-bit refcounts cannot count a snapshot's second reference.)
          if (round === 20 && !opts.includes('refcount_bits=1')) await createSnapshot(dev, 'mid');
          if (round % 5 === 4) await dev.flush();
          if (round % 9 === 0) expect((await dev.read(0, size)).equals(mirror)).toBe(true);
        }
        await dev.close();
        expectClean(f);
        expect(qemuRaw(f, t.dir).equals(mirror)).toBe(true);
      });
    }

    it('no L2 table reaches the file before the data it points at (evicted while the data is in flight)', async () => {
      const f = join(t.dir, 'behind-order.qcow2');
      qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', f, '64M'); // one L2 table per 2 MiB
      const dev = await Qcow2Image.open(f, { writeBehind: true, cacheBytes: 32 * 1024 }); // 8 cached tables
      const log: Array<[string, number]> = [];
      const file = dev.file;
      const orig = file.write.bind(file);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      file.write = async (off: number, data: Buffer) => {
        if (data.length === 3 * 4096) {
          await gate; // the data of the first write is slow
          await orig(off, data);
          log.push(['data', off]);
          return;
        }
        log.push(['write', off]);
        return orig(off, data);
      };
      const writes = [dev.write(0, pattern(3 * 4096, 1))];
      // Ten more tables: table 0 (dirty, pointing at the slow data) is evicted meanwhile.
      for (let i = 1; i <= 10; i++) writes.push(dev.write(i * (2 << 20), pattern(4096, i + 1)));
      await new Promise((r) => setTimeout(r, 50));
      release();
      await Promise.all(writes);
      await dev.flush();
      const table0 = dev.map.l1[0]!;
      const dataAt = log.findIndex(([k]) => k === 'data');
      const firstL2 = log.findIndex(([k, off]) => k === 'write' && off === table0);
      expect(dataAt).toBeGreaterThanOrEqual(0);
      expect(firstL2).toBeGreaterThan(dataAt);
      file.write = orig;
      await dev.close();
      expectClean(f);
    });

    it('a failed data write unlinks its clusters: the range reads as before, the image stays consistent', async () => {
      const f = join(t.dir, 'behind-fail.qcow2');
      qemuImg('create', '-f', 'qcow2', f, '4M');
      const dev = await Qcow2Image.open(f, { writeBehind: true });
      await dev.write(0, pattern(65536, 1));
      const file = dev.file;
      const orig = file.write.bind(file);
      file.write = async (off: number, data: Buffer) => {
        if (data.length === 2 * 65536) throw new Error('injected EIO');
        return orig(off, data);
      };
      await expect(dev.write(1 << 20, pattern(2 * 65536, 2))).rejects.toThrow('injected EIO');
      file.write = orig;
      expect((await dev.read(1 << 20, 2 * 65536)).every((x) => x === 0)).toBe(true);
      await dev.write(2 << 20, pattern(65536, 3));
      await dev.close();
      const c = qemuCheck(f);
      expect(c['check-errors']).toBe(0);
      expect(c.corruptions ?? 0).toBe(0); // the two clusters leak (as after a crash), nothing worse
      const want = Buffer.alloc(4 << 20);
      pattern(65536, 1).copy(want, 0);
      pattern(65536, 3).copy(want, 2 << 20);
      expect(qemuRaw(f, t.dir).equals(want)).toBe(true);
    });
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
