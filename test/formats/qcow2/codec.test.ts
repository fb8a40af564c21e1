/**
 * Header codec round trip and library-level snapshots on v2 and narrow
 * refcount images (checked by qemu-img).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applySnapshot, createSnapshot, deleteSnapshot, encodeHeader, listSnapshots, parseHeader, Qcow2Image } from '../../../formats/qcow2/index.js';
import { pattern, qemuCheck, qemuImg, qemuIo, qemuRaw, tempDir } from './helpers.js';

const t = tempDir('qcow2-codec');
afterAll(() => t.cleanup());

describe('header codec', () => {
  it('parses what qemu-img writes and re-encodes it to the same header cluster', () => {
    const f = join(t.dir, 'h.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'compression_type=zstd,extended_l2=on,cluster_size=32k', '-b', 'base.raw', '-F', 'raw', '-u', f, '7M');
    const file = readFileSync(f);
    const h = parseHeader(file.subarray(0, 32768), file.length);
    expect(h.version).toBe(3);
    expect(h.size).toBe(7 << 20);
    expect(h.compressionType).toBe(1);
    expect(h.backingFile).toBe('base.raw');
    expect(h.backingFormat).toBe('raw');
    expect(h.featureNames.some((n) => n.name === 'extended L2 entries')).toBe(true);
    const again = parseHeader(encodeHeader(h), file.length);
    expect({ ...again, featureNames: [] }).toEqual({ ...h, featureNames: [] });
    // Unknown extensions survive a rewrite verbatim.
    h.unknownExtensions.push({ type: 0x12345678, data: Buffer.from('keep me') });
    expect(parseHeader(encodeHeader(h), file.length).unknownExtensions).toEqual(h.unknownExtensions);
  });
});

describe('snapshots through the library', () => {
  for (const [name, opts] of [
    ['v2', 'compat=0.10,cluster_size=4096'],
    ['refcount_bits=2', 'refcount_bits=2,cluster_size=8192'],
    ['extended_l2', 'extended_l2=on,cluster_size=16384'],
  ] as const) {
    it(name, async () => {
      const f = join(t.dir, `s-${name.replace(/\W/g, '')}.qcow2`);
      qemuImg('create', '-f', 'qcow2', '-o', opts, f, '3M');
      qemuIo(f, ['write -P 1 0 1M', 'write -P 2 2M 100k']);
      const v0 = qemuRaw(f, t.dir);
      const img = await Qcow2Image.open(f);
      await createSnapshot(img, 'a');
      await img.write(512 * 1024, pattern(700 * 1024, 3));
      const v1 = Buffer.from(v0);
      pattern(700 * 1024, 3).copy(v1, 512 * 1024);
      await createSnapshot(img, 'b');
      await img.writeZeroes(0, 64 * 1024);
      // refcount_bits=2 allows at most 3 references: a third snapshot must fail cleanly.
      if (name === 'refcount_bits=2') await expect(createSnapshot(img, 'c')).rejects.toThrow(/refcount overflow/);
      expect(listSnapshots(img).map((s) => s.name)).toEqual(['a', 'b']);
      await img.close();
      expect(qemuCheck(f).status).toBe(0);
      expect(qemuRaw(f, t.dir, 'qcow2', ['-l', 'snapshot.name=a']).equals(v0)).toBe(true);
      expect(qemuRaw(f, t.dir, 'qcow2', ['-l', 'snapshot.name=b']).equals(v1)).toBe(true);
      const img2 = await Qcow2Image.open(f);
      // Apply adds the snapshot's references before dropping the old ones (as QEMU): make room first.
      await deleteSnapshot(img2, 'a');
      await applySnapshot(img2, 'b');
      expect((await img2.read(0, v1.length)).equals(v1)).toBe(true);
      await deleteSnapshot(img2, 'b');
      await img2.close();
      expect(qemuCheck(f).status).toBe(0);
      expect(qemuRaw(f, t.dir).equals(v1)).toBe(true);
    });
  }
});
