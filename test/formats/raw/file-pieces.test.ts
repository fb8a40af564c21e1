/**
 * formats/raw/file-pieces.ts: readPieces reads many {pos, buf} pieces of one
 * file, neighbours (gap <= GAP_MAX, ascending) with one preadv, zeroes past
 * EOF, small groups synchronously. Every case is checked byte for byte
 * against fs.readSync of each piece on its own (zero-filled past EOF).
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GAP_MAX, readPieces, type FilePiece } from '../../../formats/raw/file-pieces.js';

const KiB = 1024;
const FILE_SIZE = 300 * KiB + 123; // not a multiple of anything
/** Sentinel the piece buffers start with, so zero-filling and untouched bytes are both visible. */
const JUNK = 0xee;

let dir: string;
let file: string;
let fd: number;
let content: Buffer;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(tmpdir(), 'strata-file-pieces-'));
  file = path.join(dir, 'data.bin');
  content = randomBytes(FILE_SIZE);
  fs.writeFileSync(file, content);
  fd = fs.openSync(file, 'r');
});
afterAll(() => {
  if (fd !== undefined) fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The reference: one piece read on its own with readSync, past EOF as zeroes. */
function expected(pos: number, len: number): Buffer {
  const out = Buffer.alloc(len); // zeroes
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, out, done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return out;
}

function makePieces(spec: ReadonlyArray<readonly [pos: number, len: number]>): FilePiece[] {
  return spec.map(([pos, len]) => ({ pos, buf: Buffer.alloc(len, JUNK) }));
}

function checkPieces(pieces: readonly FilePiece[]): void {
  for (const [i, p] of pieces.entries()) {
    const want = expected(p.pos, p.buf.length);
    if (!p.buf.equals(want)) {
      let k = 0;
      while (p.buf[k] === want[k]) k++;
      throw new Error(`piece ${i} (pos ${p.pos}, len ${p.buf.length}) differs at byte ${k}: got ${p.buf[k]}, want ${want[k]}`);
    }
  }
}

/** Independent model of the grouping: start of each group (ascending pieces, breaks on a negative gap or a gap > GAP_MAX). */
function groupStarts(spec: ReadonlyArray<readonly [number, number]>): number[] {
  const starts: number[] = [];
  let end = -Infinity;
  for (const [pos, len] of spec) {
    const gap = pos - end;
    if (starts.length === 0 || gap < 0 || gap > GAP_MAX) starts.push(pos);
    end = pos + len;
  }
  return starts;
}

/**
 * Random ascending, non-overlapping pieces: adjacent, small gaps, gaps right
 * at GAP_MAX and just over it, large gaps; some straddle EOF or lie past it.
 */
const gapArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(0) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 * KiB }) },
  { weight: 1, arbitrary: fc.constantFrom(GAP_MAX - 1, GAP_MAX, GAP_MAX + 1) },
  { weight: 2, arbitrary: fc.integer({ min: GAP_MAX + 1, max: 3 * GAP_MAX }) },
);
const lenArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 512 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 32 * KiB }) },
  { weight: 1, arbitrary: fc.integer({ min: 32 * KiB, max: 100 * KiB }) },
);
const piecesArb = fc
  .record({
    first: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: FILE_SIZE + 8 * KiB })),
    steps: fc.array(fc.tuple(gapArb, lenArb), { minLength: 0, maxLength: 40 }),
    firstLen: lenArb,
  })
  .map(({ first, steps, firstLen }) => {
    const spec: Array<[number, number]> = [[first, firstLen]];
    let end = first + firstLen;
    for (const [gap, len] of steps) {
      const pos = end + gap;
      if (pos > FILE_SIZE + 400 * KiB) break; // keep memory and work bounded
      spec.push([pos, len]);
      end = pos + len;
    }
    return spec;
  });

describe('readPieces', () => {
  it('GAP_MAX is a positive byte count', () => {
    expect(Number.isSafeInteger(GAP_MAX) && GAP_MAX > 0).toBe(true);
  });

  for (const syncMax of [0, Infinity]) {
    it(`random ascending pieces match readSync piece by piece (syncMax ${syncMax})`, async () => {
      let sawPastEof = false;
      let sawBigGap = false;
      let sawAdjacent = false;
      await fc.assert(
        fc.asyncProperty(piecesArb, async (spec) => {
          const pieces = makePieces(spec);
          const readvSync = vi.spyOn(fs, 'readvSync');
          const readv = vi.spyOn(fs, 'readv');
          try {
            await readPieces(fd, pieces, syncMax);
            // One readv per group, plus at most one more (the read that finds EOF).
            const starts = groupStarts(spec);
            const used = syncMax === 0 ? readv : readvSync;
            const unused = syncMax === 0 ? readvSync : readv;
            expect(unused).not.toHaveBeenCalled();
            const firstCalls = used.mock.calls.map((c) => c[2] as number).filter((p) => starts.includes(p));
            expect(firstCalls.sort((a, b) => a - b)).toEqual([...starts].sort((a, b) => a - b));
            expect(used.mock.calls.length).toBeLessThanOrEqual(2 * starts.length);
          } finally {
            readvSync.mockRestore();
            readv.mockRestore();
          }
          checkPieces(pieces);
          for (let i = 0; i < spec.length; i++) {
            if (spec[i]![0] + spec[i]![1] > FILE_SIZE) sawPastEof = true;
            if (i > 0) {
              const gap = spec[i]![0] - (spec[i - 1]![0] + spec[i - 1]![1]);
              if (gap > GAP_MAX) sawBigGap = true;
              if (gap === 0) sawAdjacent = true;
            }
          }
        }),
        { numRuns: 50, seed: syncMax === 0 ? 0x5eed1 : 0x5eed2 },
      );
      // The generator did cover the interesting shapes.
      expect(sawPastEof && sawBigGap && sawAdjacent).toBe(true);
    });
  }

  it('a group mixing in-file and past-EOF bytes, and a group wholly past EOF, read zeroes there', async () => {
    const spec: Array<[number, number]> = [
      [FILE_SIZE - 1000, 600],
      [FILE_SIZE - 400, 900], // straddles EOF, adjacent to the previous piece
      [FILE_SIZE + 600, 50], // small gap, wholly past EOF, same group
      [FILE_SIZE + 10 * GAP_MAX, 4096], // a group of its own, past EOF
    ];
    for (const syncMax of [0, 64 * KiB, Infinity]) {
      const pieces = makePieces(spec);
      await readPieces(fd, pieces, syncMax);
      checkPieces(pieces);
      expect(pieces[3]!.buf.every((b) => b === 0)).toBe(true);
      expect(pieces[1]!.buf.subarray(400).every((b) => b === 0)).toBe(true);
      expect(pieces[1]!.buf.subarray(0, 400).equals(content.subarray(FILE_SIZE - 400))).toBe(true);
    }
  });

  it('pieces with equal or overlapping positions (sorted) still read correctly: a negative gap starts a new group', async () => {
    const spec: Array<[number, number]> = [
      [1000, 500],
      [1000, 500], // same range again
      [1200, 1000], // overlaps the previous
      [1300, 10], // inside the previous
      [2200, 100], // adjacent to [1200, 2200)
      [2250, 3000], // overlaps
      [FILE_SIZE - 10, 100],
      [FILE_SIZE - 20, 100], // out of order: negative gap past EOF
      [FILE_SIZE - 20, 5],
    ];
    for (const syncMax of [0, Infinity]) {
      const pieces = makePieces(spec);
      const spy = vi.spyOn(fs, syncMax === 0 ? 'readv' : 'readvSync');
      await readPieces(fd, pieces, syncMax);
      // Every negative gap broke a group.
      const starts = groupStarts(spec);
      expect(starts).toEqual([1000, 1000, 1200, 1300, 2250, FILE_SIZE - 10, FILE_SIZE - 20, FILE_SIZE - 20]);
      expect(spy.mock.calls.length).toBeGreaterThanOrEqual(starts.length);
      spy.mockRestore();
      checkPieces(pieces);
    }
  });

  it('a single piece, inside the file, straddling EOF, past EOF', async () => {
    for (const syncMax of [0, Infinity]) {
      for (const [pos, len] of [
        [0, FILE_SIZE],
        [12345, 1],
        [FILE_SIZE - 7, 7],
        [FILE_SIZE - 7, 70_000],
        [FILE_SIZE, 1],
        [FILE_SIZE * 3, 5000],
      ] as const) {
        const pieces = makePieces([[pos, len]]);
        await readPieces(fd, pieces, syncMax);
        checkPieces(pieces);
      }
    }
  });

  it('many adjacent tiny pieces (more than one iovec batch) read correctly', async () => {
    // 1500 pieces of 3..9 bytes, mostly adjacent, some 1-byte gaps: more
    // buffers than one preadv takes, so the list is cut into several calls.
    const spec: Array<[number, number]> = [];
    let pos = 777;
    for (let i = 0; i < 1500; i++) {
      const len = 3 + (i % 7);
      spec.push([pos, len]);
      pos += len + (i % 5 === 0 ? 1 : 0);
    }
    for (const syncMax of [0, Infinity]) {
      const pieces = makePieces(spec);
      const spy = vi.spyOn(fs, syncMax === 0 ? 'readv' : 'readvSync');
      await readPieces(fd, pieces, syncMax);
      const calls = spy.mock.calls;
      spy.mockRestore();
      checkPieces(pieces);
      expect(calls.length).toBeGreaterThan(1);
      for (const c of calls) expect((c[1] as Buffer[]).length).toBeLessThan(1024); // Linux IOV_MAX
    }
  });

  it('an empty list resolves', async () => {
    for (const syncMax of [0, Infinity]) await expect(readPieces(fd, [], syncMax)).resolves.toBeUndefined();
  });

  it('resolves to undefined with several groups', async () => {
    const pieces = makePieces([
      [0, 10],
      [10 * GAP_MAX, 10],
    ]);
    await expect(readPieces(fd, pieces, 0)).resolves.toBeUndefined();
    checkPieces(pieces);
  });

  it('a bad descriptor rejects (never throws), sync and async, one group or several', async () => {
    // A descriptor number far beyond anything open: EBADF from the system call.
    const badFd = 1 << 29;
    const shapes: Array<Array<[number, number]>> = [
      [[0, 100]],
      [
        [0, 100],
        [10 * GAP_MAX, 100],
      ],
    ];
    for (const syncMax of [0, Infinity]) {
      for (const spec of shapes) {
        let p: Promise<void> | undefined;
        expect(() => {
          p = readPieces(badFd, makePieces(spec), syncMax);
        }).not.toThrow();
        await expect(p!).rejects.toMatchObject({ code: 'EBADF' });
      }
    }
    // An invalid descriptor (argument validation error) rejects as well.
    let q: Promise<void> | undefined;
    expect(() => {
      q = readPieces(-1, makePieces([[0, 10]]), Infinity);
    }).not.toThrow();
    await expect(q!).rejects.toBeInstanceOf(Error);
  });

  it('a position that is negative or past 2^53 rejects and reads nothing (Node would read at the file position)', async () => {
    for (const pos of [-1, 2 ** 53, 2 ** 53 - 5, 2 ** 56, Number.NaN]) {
      for (const syncMax of [0, Infinity]) {
        const buf = Buffer.alloc(10, 0xee);
        await expect(readPieces(fd, [{ pos: 0, buf: Buffer.alloc(10) }, { pos, buf }], syncMax)).rejects.toThrow(/out of range/);
        expect(buf.every((b) => b === 0xee)).toBe(true);
      }
    }
  });

  it('when one group fails, the call settles only after every group has', async () => {
    // Two groups: readv is stubbed so the first completes late and the second fails at once.
    const order: string[] = [];
    const real = fs.readv;
    const spy = vi.spyOn(fs, 'readv').mockImplementation(((f: number, iov: NodeJS.ArrayBufferView[], pos: number, cb: (e: Error | null, n: number) => void) => {
      if (pos === 0) setTimeout(() => real(f, iov, pos, (e, n) => (order.push('slow done'), cb(e, n))), 30);
      else setImmediate(() => (order.push('fast failed'), cb(Object.assign(new Error('EIO'), { code: 'EIO' }), 0)));
    }) as typeof fs.readv);
    try {
      const pieces = makePieces([
        [0, 100],
        [10 * GAP_MAX, 100],
      ]);
      await expect(readPieces(fd, pieces, 0)).rejects.toMatchObject({ code: 'EIO' });
      order.push('settled');
      expect(order).toEqual(['fast failed', 'slow done', 'settled']);
    } finally {
      spy.mockRestore();
    }
  });

  it('syncMax = Infinity: every buffer is filled before readPieces returns', () => {
    const spec: Array<[number, number]> = [
      [0, 5000],
      [5000, 3000],
      [9000, 20_000], // small gap
      [9000 + 20_000 + 2 * GAP_MAX, 40_000], // new group
      [FILE_SIZE - 100, 300], // straddles EOF
      [FILE_SIZE + 5 * GAP_MAX, 64], // past EOF
    ];
    const pieces = makePieces(spec);
    const p = readPieces(fd, pieces, Infinity);
    // Checked synchronously, before awaiting anything.
    checkPieces(pieces);
    return p;
  });

  it('syncMax splits: groups of at most syncMax bytes are read synchronously, larger ones in the thread pool', async () => {
    const small: [number, number] = [100, 1000];
    const large: [number, number] = [100 + 1000 + 2 * GAP_MAX, 100_000];
    const pieces = makePieces([small, large]);
    const readvSync = vi.spyOn(fs, 'readvSync');
    const readv = vi.spyOn(fs, 'readv');
    const p = readPieces(fd, pieces, 50_000);
    // The small group is already there; the large one was handed to the pool.
    expect(pieces[0]!.buf.equals(expected(...small))).toBe(true);
    expect(readvSync).toHaveBeenCalledTimes(1);
    expect(readv).toHaveBeenCalledTimes(1);
    expect(readv.mock.calls[0]![2]).toBe(large[0]);
    await p;
    checkPieces(pieces);
    // Exactly at the limit (gap included): still synchronous.
    readvSync.mockClear();
    readv.mockClear();
    const exact = makePieces([
      [0, 1000],
      [3000, 1096],
    ]);
    const q = readPieces(fd, exact, 4096);
    expect(readvSync).toHaveBeenCalledTimes(1);
    expect(readv).not.toHaveBeenCalled();
    checkPieces(exact);
    await q;
    // One byte over: the thread pool.
    readvSync.mockClear();
    const over = makePieces([
      [0, 1000],
      [3000, 1097],
    ]);
    await readPieces(fd, over, 4096);
    expect(readvSync).not.toHaveBeenCalled();
    expect(readv).toHaveBeenCalledTimes(1);
    checkPieces(over);
  });
});
