/**
 * BlockDevice.readRanges (src/device/block-device.ts): ranges [offset,
 * length], ascending and non-overlapping, read packed back to back into one
 * buffer, as if read one by one. Checked for Qcow2Image (a read-only image
 * whose L2 tables are cached maps every range and reads its data clusters as
 * file pieces; anything else falls back to range-by-range reads), for
 * RawDevice, and for the helpers readRangesEach / readRangesOf.
 *
 * The reference is always independent: qemu-img's raw conversion of the
 * image (or the raw file's own bytes), sliced and concatenated; and the
 * device's own read() of each range.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readRangesEach, readRangesOf, type BlockDevice, type ReadRanges } from '../../../src/device/block-device.js';
import { openImage, openImageLayers } from '../../../formats/image-format.js';
import { Qcow2Image } from '../../../formats/qcow2/image.js';
import { RawDevice } from '../../../formats/raw/index.js';
import { pattern, qemuImg, qemuIo, qemuRaw, readAll, rng, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Bytes after the packed output that readRanges must leave alone. */
const TAIL = 37;
const FILL = 0xa5;

const t = tempDir('read-ranges');
afterAll(() => t.cleanup());

type Range = [offset: number, length: number];

/** Write `len` bytes of seeded random data at `off` with qemu-io (its own source file each time). */
let srcSeq = 0;
function dataCmd(off: number, len: number): string {
  const src = join(t.dir, `src-${srcSeq++}.bin`);
  fs.writeFileSync(src, pattern(Math.ceil(len / 4) * 4, 1000 + srcSeq));
  return `write -s ${src} ${off} ${len}`;
}

interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present?: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}
function qemuMap(file: string): MapEntry[] {
  return JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-f', 'qcow2', file], { encoding: 'utf8' })) as MapEntry[];
}

interface Fixture {
  file: string;
  ref: Buffer;
  size: number;
}

/**
 * A qcow2 image written out of guest order (host clusters are not in guest
 * order), with unaligned writes, a write across an L2 table boundary, zero
 * clusters over data and over nothing, a discard, a partial last cluster
 * and unallocated ranges.
 */
function mixImage(name: string, opts: string): Fixture {
  const file = join(t.dir, `${name}.qcow2`);
  const size = 3 * MiB + 1536;
  qemuImg('create', '-f', 'qcow2', '-o', opts, file, String(size));
  qemuIo(file, [
    dataCmd(2560 * KiB, 64 * KiB),
    dataCmd(0, 16 * KiB),
    dataCmd(2100 * KiB + 100, 5000),
    dataCmd(1 * MiB, 100 * KiB),
    dataCmd(2040 * KiB, 20 * KiB), // across the 2 MiB L2 boundary of 4k clusters
    'write -z 1044k 40k', // zeroes over data
    'write -z 500k 64k', // zeroes over nothing
    'discard 2576k 8k',
    dataCmd(3 * MiB, 1536), // the partial last cluster
    dataCmd(8 * KiB, 4 * KiB), // rewrite in place
    dataCmd(1500 * KiB, 12 * KiB),
    dataCmd(700 * KiB + 333, 3000), // inside one cluster, unaligned both ends
    dataCmd(1800 * KiB, 200 * KiB),
    dataCmd(2900 * KiB, 4 * KiB),
  ]);
  return { file, ref: qemuRaw(file, t.dir), size };
}

/** Compressible but position-dependent bytes (a four-letter alphabet), so qemu-img -c really compresses them. */
function compressible(len: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = 0x61 + Math.floor(r() * 4);
  return b;
}

/** Compressed clusters (qemu-img convert -c), then plain data over some of them and elsewhere, and zeroes. */
function compressedImage(): Fixture {
  const raw = join(t.dir, 'c-src.raw');
  const size = 1 * MiB + 512;
  const src = Buffer.alloc(size);
  compressible(256 * KiB, 7).copy(src, 0);
  compressible(100 * KiB + 5, 8).copy(src, 600 * KiB);
  fs.writeFileSync(raw, src);
  const file = join(t.dir, 'c.qcow2');
  qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'cluster_size=4096', raw, file);
  qemuIo(file, [dataCmd(900 * KiB, 20 * KiB), dataCmd(100 * KiB + 10, 8 * KiB), 'write -z 620k 8k', dataCmd(20 * KiB, 4 * KiB)]);
  return { file, ref: qemuRaw(file, t.dir), size };
}

/** A qcow2 overlay (4k clusters, larger than its base) on a qcow2 base (64k clusters). */
function backedImage(): Fixture {
  const base = join(t.dir, 'base.qcow2');
  qemuImg('create', '-f', 'qcow2', base, String(2 * MiB));
  qemuIo(base, [dataCmd(0, 300 * KiB), dataCmd(1 * MiB, 512 * KiB), dataCmd(2 * MiB - 4 * KiB, 4 * KiB)]);
  const file = join(t.dir, 'overlay.qcow2');
  const size = 2 * MiB + 256 * KiB;
  qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', base, '-F', 'qcow2', file, String(size));
  qemuIo(file, [dataCmd(1200 * KiB, 64 * KiB), dataCmd(10 * KiB, 7 * KiB), 'write -z 200k 16k', dataCmd(2 * MiB + 100 * KiB, 8 * KiB), dataCmd(1 * MiB - 2 * KiB, 4 * KiB)]);
  return { file, ref: qemuRaw(file, t.dir), size };
}

/**
 * Random range lists over [0, size): ascending and non-overlapping, with
 * adjacent ranges, small and cluster-sized gaps and large ones; lengths
 * from one byte to a few hundred KiB; sometimes running to the very end.
 */
function rangesArb(size: number): fc.Arbitrary<Range[]> {
  const gap = fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 4095 }) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 16 }).map((k) => k * 4096) },
    { weight: 1, arbitrary: fc.integer({ min: 64 * KiB, max: 700 * KiB }) },
  );
  const len = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 600 }) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }).map((k) => k * 4096) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 20_000 }) },
    { weight: 1, arbitrary: fc.integer({ min: 50 * KiB, max: 300 * KiB }) },
  );
  return fc
    .record({
      first: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: size - 1 }), fc.integer({ min: 0, max: 256 }).map((k) => k * 4096)),
      steps: fc.array(fc.tuple(gap, len), { minLength: 1, maxLength: 30 }),
      toEnd: fc.boolean(),
    })
    .map(({ first, steps, toEnd }) => {
      const out: Range[] = [];
      let pos = Math.min(first, size - 1);
      for (const [g, l] of steps) {
        if (out.length) pos += g;
        if (pos >= size) break;
        out.push([pos, Math.min(l, size - pos)]);
        pos += out[out.length - 1]![1];
      }
      if (toEnd) out[out.length - 1]![1] = size - out[out.length - 1]![0];
      return out;
    });
}

function total(ranges: ReadRanges): number {
  return ranges.reduce((s, [, l]) => s + l, 0);
}

/** The expected packed output: the reference's bytes of each range, back to back. */
function packed(ref: Buffer, ranges: ReadRanges): Buffer {
  return Buffer.concat(ranges.map(([o, l]) => ref.subarray(o, o + l)));
}

/** Compare byte for byte; on a mismatch, say which range and which device offset. */
function expectPacked(got: Buffer, ref: Buffer, ranges: ReadRanges, what: string): void {
  const want = packed(ref, ranges);
  expect(got.length).toBe(want.length);
  if (got.equals(want)) return;
  let at = 0;
  for (const [i, [o, l]] of ranges.entries()) {
    const g = got.subarray(at, at + l);
    const w = want.subarray(at, at + l);
    if (!g.equals(w)) {
      let k = 0;
      while (g[k] === w[k]) k++;
      throw new Error(`${what}: range ${i} [${o}, +${l}] differs at device offset ${o + k}: got ${g[k]}, want ${w[k]}`);
    }
    at += l;
  }
  throw new Error(`${what}: mismatch`);
}

/** readRanges (or `call`) into a buffer with a guarded tail; returns the packed bytes. */
async function viaReadRanges(ranges: ReadRanges, call: (into: Buffer) => Promise<void>): Promise<Buffer> {
  const n = total(ranges);
  const into = Buffer.alloc(n + TAIL, FILL);
  await expect(call(into)).resolves.toBeUndefined();
  expect(into.subarray(n).every((b) => b === FILL)).toBe(true);
  return into.subarray(0, n);
}

/** Each range through read(), concatenated. */
async function viaRead(dev: BlockDevice, ranges: ReadRanges): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const [o, l] of ranges) parts.push(Buffer.from(await dev.read(o, l)));
  return Buffer.concat(parts);
}

/** The internals readRanges uses, spied on: range-by-range reads vs the file-pieces path. */
function spyPaths(img: Qcow2Image): { reads: () => number; pieces: () => number; ascending: () => boolean; restore: () => void } {
  const read = vi.spyOn(img, 'read');
  const file = (img as unknown as { file: { readPieces: (p: ReadonlyArray<{ pos: number; buf: Buffer }>) => Promise<void> } }).file;
  const pieces = vi.spyOn(file, 'readPieces');
  return {
    reads: () => read.mock.calls.length,
    pieces: () => pieces.mock.calls.length,
    // ImageFile.readPieces wants ascending file offsets (so neighbours share a call).
    ascending: () => pieces.mock.calls.every(([p]) => p.every((x, i) => i === 0 || x.pos >= p[i - 1]!.pos)),
    restore: () => {
      read.mockRestore();
      pieces.mockRestore();
    },
  };
}

async function openQcow2(file: string): Promise<Qcow2Image> {
  const dev = await openImage(file, { readOnly: true });
  expect(dev).toBeInstanceOf(Qcow2Image);
  return dev as Qcow2Image;
}

describe('Qcow2Image.readRanges', () => {
  const fixtures: Record<string, Fixture> = {};
  beforeAll(() => {
    fixtures.mix4k = mixImage('mix-4k', 'cluster_size=4096');
    fixtures.mixExt = mixImage('mix-ext', 'extended_l2=on,cluster_size=32768');
    fixtures.compressed = compressedImage();
    fixtures.backed = backedImage();
  });

  it('the fixtures have what the tests need (host clusters out of guest order, zero clusters, compressed clusters)', () => {
    for (const name of ['mix4k', 'mixExt']) {
      const f = fixtures[name]!;
      const data = qemuMap(f.file).filter((e) => e.data && e.offset !== undefined);
      const outOfOrder = data.some((e, i) => i > 0 && e.offset! < data[i - 1]!.offset!);
      expect(outOfOrder, name).toBe(true);
      expect(
        qemuMap(f.file).some((e) => e.zero && e.present !== false && !e.data),
        name,
      ).toBe(true);
      expect(f.ref.length).toBe(f.size);
    }
    const c = qemuMap(fixtures.compressed!.file);
    expect(c.some((e) => e.data && e.offset === undefined)).toBe(true); // compressed: no host offset
    expect(c.some((e) => e.data && e.offset !== undefined)).toBe(true);
  });

  for (const name of ['mix4k', 'mixExt']) {
    it(`${name}: random ranges, uncached (range by range) and cached (file pieces), equal qemu-img and read()`, async () => {
      const f = fixtures[name]!;
      await fc.assert(
        fc.asyncProperty(rangesArb(f.size), async (ranges) => {
          const dev = await openQcow2(f.file);
          try {
            // Nothing read yet: no L2 table is cached, so readRanges must fall back.
            let spy = spyPaths(dev);
            let got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
            expect(spy.reads()).toBe(ranges.length);
            expect(spy.pieces()).toBe(0);
            spy.restore();
            expectPacked(got, f.ref, ranges, `${name} uncached`);

            // After a full read every L2 table is cached: the pieces path.
            expect((await readAll(dev)).equals(f.ref)).toBe(true);
            spy = spyPaths(dev);
            got = await viaReadRanges(ranges, (into) => readRangesOf(dev, ranges, into));
            expect(spy.reads()).toBe(0);
            expect(spy.pieces()).toBeLessThanOrEqual(1);
            expect(spy.ascending()).toBe(true);
            spy.restore();
            expectPacked(got, f.ref, ranges, `${name} cached`);
            expect((await viaRead(dev, ranges)).equals(got)).toBe(true);
          } finally {
            await dev.close();
          }
        }),
        { numRuns: 20, seed: name === 'mix4k' ? 4242 : 4343 },
      );
    });
  }

  it('mix4k: ranges whose data clusters lie in reverse file order, and ranges over holes only', async () => {
    const f = fixtures.mix4k!;
    const dev = await openQcow2(f.file);
    try {
      await readAll(dev);
      // Written 2560k first, 0 later, 1M later still: in guest order these are in descending-then-ascending host order.
      const cases: Range[][] = [
        [
          [0, 16 * KiB],
          [1 * MiB, 100 * KiB],
          [2560 * KiB, 64 * KiB],
        ],
        [
          [1 * MiB + 4095, 2],
          [2560 * KiB - 1, 2],
          [2560 * KiB + 4095, 4098],
        ],
        [[0, f.size]],
        [
          [400 * KiB, 4 * KiB],
          [500 * KiB, 64 * KiB], // zero clusters
          [2700 * KiB, 100 * KiB],
        ],
        [[f.size - 1, 1]],
        [
          [f.size - 2000, 1000],
          [f.size - 1000, 1000],
        ],
      ];
      for (const ranges of cases) {
        const spy = spyPaths(dev);
        const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
        expect(spy.reads()).toBe(0);
        expect(spy.ascending()).toBe(true);
        spy.restore();
        expectPacked(got, f.ref, ranges, JSON.stringify(ranges));
      }
    } finally {
      await dev.close();
    }
  });

  it('compressed clusters: ranges that touch one fall back, others use file pieces; all equal qemu-img', async () => {
    const f = fixtures.compressed!;
    const map = qemuMap(f.file);
    const compressedAt = (o: number, l: number) => map.some((e) => e.data && e.offset === undefined && e.start < o + l && o < e.start + e.length);
    let sawFallback = false;
    let sawPieces = false;
    await fc.assert(
      fc.asyncProperty(rangesArb(f.size), async (ranges) => {
        const dev = await openQcow2(f.file);
        try {
          let got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
          expectPacked(got, f.ref, ranges, 'compressed uncached');
          await readAll(dev);
          const spy = spyPaths(dev);
          got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
          const fallback = ranges.some(([o, l]) => compressedAt(o, l));
          expect(spy.reads()).toBe(fallback ? ranges.length : 0);
          spy.restore();
          if (fallback) sawFallback = true;
          else sawPieces = true;
          expectPacked(got, f.ref, ranges, 'compressed cached');
          expect((await viaRead(dev, ranges)).equals(got)).toBe(true);
        } finally {
          await dev.close();
        }
      }),
      { numRuns: 20, seed: 99 },
    );
    expect(sawFallback).toBe(true);
    // A list that avoids the compressed clusters takes the pieces path.
    const dev = await openQcow2(f.file);
    try {
      await readAll(dev);
      const ranges: Range[] = [
        [100 * KiB, 8 * KiB],
        [300 * KiB, 4 * KiB],
        [620 * KiB, 8 * KiB],
        [900 * KiB, 20 * KiB],
      ];
      expect(ranges.some(([o, l]) => compressedAt(o, l))).toBe(false);
      const spy = spyPaths(dev);
      const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
      expect(spy.reads()).toBe(0);
      expect(spy.pieces()).toBe(1);
      spy.restore();
      expectPacked(got, f.ref, ranges, 'compressed, avoiding');
      sawPieces = true;
    } finally {
      await dev.close();
    }
    expect(sawPieces).toBe(true);
  });

  it('a backing file: the top layer falls back where it does not hold the data; the chain reads right through readRangesOf', async () => {
    const f = fixtures.backed!;
    const map = qemuMap(f.file);
    // Where the overlay itself decides the contents (its data or zeroes): depth 0 and present.
    const ownAt = (o: number, l: number) => {
      for (let p = o; p < o + l; ) {
        const e = map.find((m) => m.start <= p && p < m.start + m.length)!;
        if (e.depth !== 0 || e.present === false) return false;
        p = e.start + e.length;
      }
      return true;
    };
    let sawOwn = false;
    await fc.assert(
      fc.asyncProperty(rangesArb(f.size), async (ranges) => {
        const { device, layers } = await openImageLayers(f.file, { readOnly: true });
        try {
          expect(layers.length).toBe(2);
          const top = layers[0]!.dev as Qcow2Image;
          expect(top).toBeInstanceOf(Qcow2Image);
          expect(top.backing).not.toBeNull();
          // The whole chain (whatever device it is) through readRangesOf.
          let got = await viaReadRanges(ranges, (into) => readRangesOf(device, ranges, into));
          expectPacked(got, f.ref, ranges, 'chain');
          // The top layer's own readRanges, before and after its tables are cached.
          got = await viaReadRanges(ranges, (into) => top.readRanges(ranges, into));
          expectPacked(got, f.ref, ranges, 'top layer');
          expect((await readAll(top)).equals(f.ref)).toBe(true);
          const spy = spyPaths(top);
          got = await viaReadRanges(ranges, (into) => top.readRanges(ranges, into));
          const own = ranges.every(([o, l]) => ownAt(o, l));
          expect(spy.reads()).toBe(own ? 0 : ranges.length);
          spy.restore();
          if (own) sawOwn = true;
          expectPacked(got, f.ref, ranges, 'top layer cached');
          expect((await viaRead(device, ranges)).equals(got)).toBe(true);
        } finally {
          await device.close();
        }
      }),
      { numRuns: 15, seed: 7 },
    );
    // Ranges wholly inside the overlay's own clusters take the pieces path even with a backing file.
    const { device, layers } = await openImageLayers(f.file, { readOnly: true });
    try {
      const top = layers[0]!.dev as Qcow2Image;
      await readAll(top);
      const ranges: Range[] = [
        [10 * KiB, 6 * KiB],
        [200 * KiB, 16 * KiB],
        [1200 * KiB, 64 * KiB],
      ];
      expect(ranges.every(([o, l]) => ownAt(o, l))).toBe(true);
      const spy = spyPaths(top);
      const got = await viaReadRanges(ranges, (into) => top.readRanges(ranges, into));
      expect(spy.reads()).toBe(0);
      spy.restore();
      expectPacked(got, f.ref, ranges, 'own ranges');
      sawOwn = true;
    } finally {
      await device.close();
    }
    expect(sawOwn).toBe(true);
  });

  it('a writable image always reads range by range (and still right)', async () => {
    const f = fixtures.mix4k!;
    const copy = join(t.dir, 'mix-4k-rw.qcow2');
    fs.copyFileSync(f.file, copy);
    const dev = await openImage(copy);
    try {
      expect(dev).toBeInstanceOf(Qcow2Image);
      expect(dev.info().readOnly).toBe(false);
      expect((await readAll(dev)).equals(f.ref)).toBe(true);
      const ranges: Range[] = [
        [0, 16 * KiB],
        [500 * KiB, 100],
        [1 * MiB + 7, 9000],
        [2560 * KiB, 64 * KiB],
      ];
      const spy = spyPaths(dev as Qcow2Image);
      const got = await viaReadRanges(ranges, (into) => readRangesOf(dev, ranges, into));
      expect(spy.reads()).toBe(ranges.length);
      expect(spy.pieces()).toBe(0);
      spy.restore();
      expectPacked(got, f.ref, ranges, 'writable');
    } finally {
      await dev.close();
    }
  });

  it('edge cases: empty list, zero-length ranges, concurrent calls, close while a call is in flight, after close', async () => {
    const f = fixtures.mix4k!;
    const dev = await openQcow2(f.file);
    await readAll(dev);
    // Empty list: resolves, writes nothing.
    const none = Buffer.alloc(8, FILL);
    await expect(dev.readRanges([], none)).resolves.toBeUndefined();
    expect(none.every((b) => b === FILL)).toBe(true);
    // A zero-length range in the middle takes no room.
    const withEmpty: Range[] = [
      [0, 100],
      [100, 0],
      [5000, 10],
    ];
    let got = await viaReadRanges(withEmpty, (into) => dev.readRanges(withEmpty, into));
    expectPacked(got, f.ref, withEmpty, 'zero-length');
    // Concurrent calls on one image.
    const lists: Range[][] = [
      [
        [0, 64 * KiB],
        [1 * MiB, 128 * KiB],
      ],
      [
        [2 * MiB - 8 * KiB, 16 * KiB],
        [2560 * KiB, 70 * KiB],
      ],
      [[1500 * KiB, 12 * KiB]],
    ];
    const outs = await Promise.all(lists.map((r) => viaReadRanges(r, (into) => dev.readRanges(r, into))));
    outs.forEach((o, i) => expectPacked(o, f.ref, lists[i]!, `concurrent ${i}`));
    // close() waits for a call in flight.
    const big: Range[] = [
      [0, 1 * MiB],
      [1 * MiB + 4 * KiB, 2 * MiB - 8 * KiB],
    ];
    const into = Buffer.alloc(total(big), FILL);
    const p = dev.readRanges(big, into);
    const c = dev.close();
    await p;
    await c;
    expectPacked(into, f.ref, big, 'close in flight');
    // After close: rejects, never throws.
    let q: Promise<void> | undefined;
    expect(() => {
      q = dev.readRanges([[0, 10]], Buffer.alloc(10));
    }).not.toThrow();
    await expect(q!).rejects.toBeInstanceOf(Error);
  });
});

describe('RawDevice.readRanges', () => {
  let file: string;
  let ref: Buffer;
  beforeAll(() => {
    file = join(t.dir, 'r.raw');
    fs.writeFileSync(file, pattern(700 * KiB + 80, 31));
    // Extended with a hole: the device's size runs past the written data.
    fs.truncateSync(file, 1 * MiB + 333);
    ref = fs.readFileSync(file);
    expect(ref.length).toBe(1 * MiB + 333);
    // qemu-img agrees (its raw output is rounded up to whole sectors of zeroes).
    const q = qemuRaw(file, t.dir, 'raw');
    expect(q.subarray(0, ref.length).equals(ref)).toBe(true);
    expect(q.subarray(ref.length).every((b) => b === 0)).toBe(true);
  });

  for (const inlineIo of ['always', 'never'] as const) {
    it(`random ranges equal the file's bytes and read() (inlineIo ${inlineIo})`, async () => {
      const dev = await RawDevice.open(file, { readOnly: true, inlineIo });
      try {
        const size = dev.info().size;
        expect(size).toBe(ref.length);
        await fc.assert(
          fc.asyncProperty(rangesArb(size), async (ranges) => {
            const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
            expectPacked(got, ref, ranges, `raw ${inlineIo}`);
            expect((await viaRead(dev, ranges)).equals(got)).toBe(true);
            const each = await viaReadRanges(ranges, (into) => readRangesEach(dev, ranges, into));
            expect(each.equals(got)).toBe(true);
          }),
          { numRuns: 40, seed: inlineIo === 'always' ? 1 : 2 },
        );
      } finally {
        await dev.close();
      }
    });
  }

  it('ranges past the physical end of a file cut short after open read as zeroes', async () => {
    const f = join(t.dir, 'short.raw');
    const content = pattern(512 * KiB, 77);
    fs.writeFileSync(f, content);
    for (const inlineIo of ['always', 'never'] as const) {
      fs.writeFileSync(f, content);
      const dev = await RawDevice.open(f, { readOnly: true, inlineIo });
      try {
        const size = dev.info().size;
        fs.truncateSync(f, 300 * KiB + 3); // the device still believes in 512 KiB
        const cut = Buffer.alloc(size);
        content.copy(cut, 0, 0, 300 * KiB + 3);
        const lists: Range[][] = [
          [
            [300 * KiB - 10, 20], // straddles the new end
            [300 * KiB + 10, 5],
            [400 * KiB, 4 * KiB], // wholly past it
            [size - 1, 1],
          ],
          [[0, size]],
          [
            [1000, 64 * KiB], // inline-sized group before the end
            [200 * KiB, 200 * KiB], // a large one across it
          ],
        ];
        for (const ranges of lists) {
          const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
          expectPacked(got, cut, ranges, `short ${inlineIo}`);
          expect((await viaRead(dev, ranges)).equals(got)).toBe(true);
        }
        await fc.assert(
          fc.asyncProperty(rangesArb(size), async (ranges) => {
            const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
            expectPacked(got, cut, ranges, `short random ${inlineIo}`);
          }),
          { numRuns: 20, seed: 5 },
        );
      } finally {
        await dev.close();
      }
    }
  });

  it('empty list and zero-length ranges; a closed device rejects', async () => {
    const dev = await RawDevice.open(file, { readOnly: true });
    const none = Buffer.alloc(4, FILL);
    await expect(dev.readRanges([], none)).resolves.toBeUndefined();
    expect(none.every((b) => b === FILL)).toBe(true);
    const ranges: Range[] = [
      [10, 0],
      [10, 5],
      [100, 0],
      [200, 7],
    ];
    const got = await viaReadRanges(ranges, (into) => dev.readRanges(ranges, into));
    expectPacked(got, ref, ranges, 'raw zero-length');
    await dev.close();
    let q: Promise<void> | undefined;
    expect(() => {
      q = dev.readRanges([[0, 10]], Buffer.alloc(10));
    }).not.toThrow();
    await expect(q!).rejects.toMatchObject({ code: 'ESHUTDOWN' });
  });
});

describe('readRangesEach / readRangesOf', () => {
  /** A device over `ref` whose reads settle in a scrambled order after a delay, recording when each started. */
  function slowDevice(ref: Buffer) {
    const started: Range[] = [];
    let pending = 0;
    let maxPending = 0;
    const dev = {
      read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
        started.push([offset, length]);
        pending++;
        maxPending = Math.max(maxPending, pending);
        const out = into ?? Buffer.allocUnsafe(length);
        const delay = (offset * 7919) % 13; // later ranges may finish first
        return new Promise((res) =>
          setTimeout(() => {
            ref.copy(out, 0, offset, offset + length);
            pending--;
            res(out);
          }, delay),
        );
      },
    };
    return { dev, started, maxPending: () => maxPending };
  }

  it('readRangesEach reads every range at once and packs the results in order', async () => {
    const ref = pattern(256 * KiB, 3);
    await fc.assert(
      fc.asyncProperty(rangesArb(ref.length), async (ranges) => {
        const s = slowDevice(ref);
        const got = await viaReadRanges(ranges, (into) => readRangesEach(s.dev, ranges, into));
        expectPacked(got, ref, ranges, 'readRangesEach');
        expect(s.started).toEqual(ranges);
        expect(s.maxPending()).toBe(ranges.length); // all issued before any finished
      }),
      { numRuns: 30, seed: 11 },
    );
  });

  it('readRangesEach rejects when one read fails', async () => {
    const ref = pattern(64 * KiB, 4);
    const dev = {
      read: (o: number, l: number, into?: Buffer): Promise<Buffer> => {
        if (o === 4096) return Promise.reject(new Error('boom'));
        ref.copy(into!, 0, o, o + l);
        return Promise.resolve(into!);
      },
    };
    await expect(
      readRangesEach(
        dev,
        [
          [0, 10],
          [4096, 10],
          [9000, 10],
        ],
        Buffer.alloc(30),
      ),
    ).rejects.toThrow('boom');
  });

  it('readRangesOf uses the device\'s readRanges when it has one, read() otherwise', async () => {
    const ref = pattern(64 * KiB, 5);
    const ranges: Range[] = [
      [0, 100],
      [100, 50],
      [5000, 4096],
    ];
    const s = slowDevice(ref);
    const withOwn = {
      ...s.dev,
      readRanges: vi.fn(async (r: ReadRanges, into: Buffer) => {
        let at = 0;
        for (const [o, l] of r) at += ref.copy(into, at, o, o + l);
      }),
    } as unknown as BlockDevice;
    let got = await viaReadRanges(ranges, (into) => readRangesOf(withOwn, ranges, into));
    expectPacked(got, ref, ranges, 'own readRanges');
    expect(withOwn.readRanges).toHaveBeenCalledTimes(1);
    expect(s.started).toEqual([]);
    const plain = slowDevice(ref);
    got = await viaReadRanges(ranges, (into) => readRangesOf(plain.dev as unknown as BlockDevice, ranges, into));
    expectPacked(got, ref, ranges, 'plain read');
    expect(plain.started).toEqual(ranges);
  });
});
