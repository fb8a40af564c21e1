/**
 * Read side: images made by qemu-img/qemu-io read byte-identical to
 * qemu-img's own raw conversion, for every on-disk feature.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, openImageLayers } from '../../../formats/image-format.js';
import { qemuImg, qemuIo, qemuRaw, readAll, rng, tempDir } from './helpers.js';

const t = tempDir('qcow2-read');
afterAll(() => t.cleanup());

async function sameAsQemu(file: string): Promise<void> {
  const dev = await openImage(file, { readOnly: true });
  try {
    const ours = await readAll(dev);
    const theirs = qemuRaw(file, t.dir);
    expect(ours.length).toBe(theirs.length);
    expect(ours.equals(theirs)).toBe(true);
  } finally {
    await dev.close();
  }
}

/** A mix of data, zero clusters, discards and unaligned writes. */
const MIX = [
  'write -P 0x11 0 64k',
  'write -P 0x22 100k 7k',
  'write -P 0x33 1M 1M',
  'write -z 1536k 128k',
  'discard 1152k 64k',
  'write -P 0x44 3M 4097',
  'write -z 3M 512',
];

describe('qcow2 read matches qemu-img', () => {
  const cases: Array<[string, string]> = [
    ['v2 64k', 'compat=0.10,cluster_size=65536'],
    ['v3 512 refcount 1', 'compat=1.1,cluster_size=512,refcount_bits=1'],
    ['v3 4k refcount 8', 'cluster_size=4096,refcount_bits=8'],
    ['v3 64k refcount 64', 'refcount_bits=64'],
    ['v3 2M refcount 2', 'cluster_size=2M,refcount_bits=2'],
    ['v3 extended_l2 64k', 'extended_l2=on,cluster_size=65536'],
    ['v3 extended_l2 16k', 'extended_l2=on,cluster_size=16384'],
    ['v2 512 refcount 16', 'compat=0.10,cluster_size=512'],
  ];
  for (const [name, opts] of cases) {
    it(name, async () => {
      const f = join(t.dir, `${name.replace(/\W+/g, '_')}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', opts, f, '4M');
      qemuIo(f, opts.includes('0.10') ? MIX.filter((c) => !c.startsWith('write -z')) : MIX);
      await sameAsQemu(f);
    });
  }

  for (const ct of ['zlib', 'zstd']) {
    it(`compressed (${ct})`, async () => {
      const raw = join(t.dir, `c-${ct}.raw`);
      qemuImg('create', '-f', 'raw', raw, '3M');
      qemuIo(raw, ['write -P 0x5a 0 1M', 'write -P 0x61 1100k 333k', 'write -P 0 2M 64k'], 'raw');
      const f = join(t.dir, `c-${ct}.qcow2`);
      qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', `compression_type=${ct}`, raw, f);
      await sameAsQemu(f);
      // Overwrite part of a compressed cluster: still identical after qemu's COW.
      qemuIo(f, ['write -P 0x77 4k 4k']);
      await sameAsQemu(f);
    });
  }

  it('internal snapshots: the active state reads, snapshot untouched', async () => {
    const f = join(t.dir, 'snap.qcow2');
    qemuImg('create', '-f', 'qcow2', f, '2M');
    qemuIo(f, ['write -P 1 0 256k']);
    qemuImg('snapshot', '-c', 's1', f);
    qemuIo(f, ['write -P 2 64k 64k']);
    await sameAsQemu(f);
  });

  it('backing chain: raw base, qcow2 layers of different cluster sizes, depth 4', async () => {
    const base = join(t.dir, 'base.raw');
    qemuImg('create', '-f', 'raw', base, '3M');
    qemuIo(base, ['write -P 0xb0 0 3M'], 'raw');
    const l1 = join(t.dir, 'l1.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', base, '-F', 'raw', l1, '4M');
    qemuIo(l1, ['write -P 0xb1 1M 100k', 'write -z 2M 64k']);
    const l2 = join(t.dir, 'l2.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on', '-b', 'l1.qcow2', '-F', 'qcow2', l2, '4M');
    qemuIo(l2, ['write -P 0xb2 1030k 5k', 'write -P 0xb2 3500k 8k']);
    const l3 = join(t.dir, 'l3.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', l2, '-F', 'qcow2', l3, '5M');
    qemuIo(l3, ['write -P 0xb3 0 4k', 'write -z 1040k 64k']);
    await sameAsQemu(l3);
  });

  it('a read-only image serves concurrent reads (no lock) and close() waits for them', async () => {
    const f = join(t.dir, 'concurrent.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', f, '4M');
    qemuIo(f, MIX);
    qemuImg('create', '-f', 'qcow2', '-b', 'concurrent.qcow2', '-F', 'qcow2', `${f}.top`);
    qemuIo(`${f}.top`, ['write -P 0x55 2M 20k', 'write -z 1M 8k']);
    // And a qcow2 over a raw base (an owner that is not qcow2).
    const raw = join(t.dir, 'concurrent-base.raw');
    qemuImg('create', '-f', 'raw', raw, '4M');
    qemuIo(raw, ['write -P 0x66 0 3M'], 'raw');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'concurrent-base.raw', '-F', 'raw', `${raw}.top`);
    qemuIo(`${raw}.top`, ['write -P 0x77 1M 12k', 'write -z 2M 4k']);
    for (const file of [f, `${f}.top`, `${raw}.top`]) {
      const expected = qemuRaw(file, t.dir);
      const dev = await openImage(file, { readOnly: true });
      const r = rng(file.length);
      const batch = () =>
        Array.from({ length: 400 }, (_, i) => {
          // Aligned 4 KiB reads (the one-unit fast paths), unaligned small ones, large ones.
          const len = i % 3 === 2 ? 1 + Math.floor(r() * 200_000) : 4096;
          let off = Math.floor(r() * (expected.length - len));
          if (i % 3 === 0) off -= off % 4096;
          return { off, len, p: dev.read(off, len) };
        });
      // The first batch builds the chain index and fills the caches; the second reads through them.
      for (const { off, len, p } of batch()) expect((await p).equals(expected.subarray(off, off + len))).toBe(true);
      const reads = batch();
      const closing = dev.close(); // must not close the file under the reads in flight
      for (const { off, len, p } of reads) expect((await p).equals(expected.subarray(off, off + len))).toBe(true);
      await closing;
      await expect(dev.read(0, 512)).rejects.toThrow();
    }
  });

  it('virtual size above 4 GiB', async () => {
    const f = join(t.dir, 'big.qcow2');
    qemuImg('create', '-f', 'qcow2', f, '6G');
    qemuIo(f, ['write -P 0x42 5G 128k', 'write -P 0x43 4095M 2M']);
    const dev = await openImage(f, { readOnly: true });
    try {
      expect(dev.info().size).toBe(6 * 1024 ** 3);
      const a = await dev.read(5 * 1024 ** 3 - 4096, 136 * 1024);
      expect(a.subarray(0, 4096).every((x) => x === 0)).toBe(true);
      expect(a.subarray(4096, 4096 + 128 * 1024).every((x) => x === 0x42)).toBe(true);
      const b = await dev.read(4095 * 1024 ** 2, 2 * 1024 ** 2);
      expect(b.every((x) => x === 0x43)).toBe(true);
      const ext = await dev.blockStatus(4 * 1024 ** 3, 1024 ** 3);
      expect(ext[0]!.hole).toBe(false);
    } finally {
      await dev.close();
    }
  });

  it('a deep chain (depth 20) reads through the merged index: each layer is asked once per index block', async () => {
    const d = join(t.dir, 'deep');
    qemuImg('create', '-f', 'qcow2', `${d}-0.qcow2`, '8M');
    qemuIo(`${d}-0.qcow2`, ['write -P 1 0 4M']);
    for (let i = 1; i < 20; i++) {
      qemuImg('create', '-f', 'qcow2', '-o', `cluster_size=${i % 2 ? 4096 : 65536}`, '-b', `deep-${i - 1}.qcow2`, '-F', 'qcow2', `${d}-${i}.qcow2`);
      qemuIo(`${d}-${i}.qcow2`, [`write -P ${i + 1} ${i * 300}k 12k`, ...(i % 5 === 0 ? [`write -z ${i * 100}k 64k`] : [])]);
    }
    const top = `${d}-19.qcow2`;
    const want = qemuRaw(top, t.dir);
    const { device, layers } = await openImageLayers(top, { readOnly: true });
    try {
      expect(layers).toHaveLength(20);
      let calls = 0;
      for (const l of layers) {
        const q = l.qcow2!;
        const orig = q.ownSegments.bind(q);
        q.ownSegments = (o: number, n: number) => {
          calls++;
          return orig(o, n);
        };
      }
      const r = rng(3);
      for (let i = 0; i < 500; i++) {
        const off = Math.floor(r() * (want.length - 4096));
        const got = await device.read(off, 4096);
        expect(got.equals(want.subarray(off, off + 4096))).toBe(true);
      }
      // 8 MiB is one index block at the 4 KiB unit: at most one query per layer in all.
      expect(calls).toBeLessThanOrEqual(layers.length);
      expect((await readAll(device)).equals(want)).toBe(true);
    } finally {
      await device.close();
    }
  });
});
