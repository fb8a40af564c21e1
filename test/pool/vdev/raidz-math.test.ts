import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  generateParity,
  gfInv,
  gfInvertMatrix,
  gfMul,
  raidzAsize,
  raidzMap,
  reconstruct,
  splitData,
} from '../../../src/pool/vdev/raidz-math.js';
import { SECTOR } from '../../../src/pool/vdev/types.js';

/** GF(2^8) multiply straight from the definition: shift-and-add, reduce by 0x11d. */
function slowMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) {
    if (b & (1 << i)) r ^= a;
    a <<= 1;
    if (a & 0x100) a ^= 0x11d;
  }
  return r;
}

/** Parity row from the definition: sum over i of g^(n-1-i) * D_i, short columns zero-padded. */
function slowParity(cols: Buffer[], plen: number, g: number): Buffer {
  const out = Buffer.alloc(plen);
  const n = cols.length;
  cols.forEach((d, i) => {
    let coef = 1;
    for (let k = 0; k < n - 1 - i; k++) coef = slowMul(coef, g);
    for (let x = 0; x < d.length; x++) out[x]! ^= slowMul(coef, d[x]!);
  });
  return out;
}

describe('GF(2^8)', () => {
  it('agrees with shift-and-add multiplication for every pair', () => {
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) if (gfMul(a, b) !== slowMul(a, b)) throw new Error(`${a}*${b}`);
    expect(gfMul(2, 0x80)).toBe(0x1d);
  });
  it('inverses and matrix inversion', () => {
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    const m = [
      [1, 1, 1],
      [4, 2, 1],
      [16, 4, 1],
    ];
    const inv = gfInvertMatrix(m);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s ^= gfMul(m[i]![k]!, inv[k]![j]!);
        expect(s).toBe(i === j ? 1 : 0);
      }
  });
});

describe('parity', () => {
  it('matches a hand-computed vector', () => {
    // D = [0x01, 0x80, 0xff]: P = 01^80^ff = 7e; Q = 4*01 ^ 2*80 ^ ff = 04^1d^ff = e6;
    // R = 16*01 ^ 4*80 ^ ff = 10^3a^ff = d5.
    const cols = [0x01, 0x80, 0xff].map((v) => Buffer.alloc(SECTOR, v));
    const [p, q, r] = generateParity(cols, SECTOR, 3);
    expect([p![0], q![0], r![0], p![SECTOR - 1], q![SECTOR - 1], r![SECTOR - 1]]).toEqual([0x7e, 0xe6, 0xd5, 0x7e, 0xe6, 0xd5]);
  });

  it('P, Q and R match the definition for random columns of mixed length (short ones zero-padded)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 1 << 30 }), (n, np, seed) => {
        let s = seed;
        const rnd = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
        const plen = 64;
        const cols = Array.from({ length: n }, (_, i) => Buffer.from(Array.from({ length: i === 0 || rnd() & 1 ? plen : plen - 16 }, rnd)));
        const par = generateParity(cols, plen, np);
        [1, 2, 4].slice(0, np).forEach((g, j) => expect(par[j]!.equals(slowParity(cols, plen, g))).toBe(true));
      }),
    );
  });
});

describe('raidzMap / raidzAsize', () => {
  it('known layouts', () => {
    // raidz1 of 3, 128K block: 32 data + 16 parity sectors = 48 (a multiple of 2).
    expect(raidzAsize(128 * 1024, 3, 1)).toBe(48 * SECTOR);
    // raidz2 of 6, one sector: P, Q, D = 3 sectors; two sectors: 4 rounded up to 6.
    expect(raidzAsize(SECTOR, 6, 2)).toBe(3 * SECTOR);
    expect(raidzAsize(2 * SECTOR, 6, 2)).toBe(6 * SECTOR);
    const m = raidzMap(0, 8 * SECTOR, 5, 1);
    expect(m.cols.map((c) => [c.devidx, c.offset, c.size / SECTOR])).toEqual([
      [0, 0, 2],
      [1, 0, 2],
      [2, 0, 2],
      [3, 0, 2],
      [4, 0, 2],
    ]);
    // 3 sectors at parent sector 7 on 5 children: starts at child 2 of row 1, wraps into row 2.
    const w = raidzMap(7 * SECTOR, 3 * SECTOR, 5, 1);
    expect(w.cols.map((c) => [c.devidx, c.offset / SECTOR, c.size / SECTOR])).toEqual([
      [2, 1, 1],
      [3, 1, 1],
      [4, 1, 1],
      [0, 2, 1],
    ]);
    expect(w.asize).toBe(4 * SECTOR);
    // raidz1 swaps parity with the first data column in odd megabytes:
    // 1 MiB is parent sector 256 = row 51, child 1, so parity moves to child 2.
    const s = raidzMap(1 << 20, 8 * SECTOR, 5, 1);
    expect(s.cols.map((c) => c.devidx)).toEqual([2, 1, 3, 4, 0]);
    expect(raidzMap(2 << 20, 8 * SECTOR, 5, 1).cols.map((c) => c.devidx)).toEqual([2, 3, 4, 0, 1]);
    expect(raidzMap(1 << 20, 8 * SECTOR, 6, 2).cols.map((c) => c.devidx)).toEqual([4, 5, 0, 1, 2, 3]);
  });

  it('a block occupies exactly its parent sectors [b, b + asize), on distinct children, and asize agrees', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 100_000 }),
        (np, extra, sectors, b) => {
          const dcols = np + 1 + extra;
          const m = raidzMap(b * SECTOR, sectors * SECTOR, dcols, np);
          expect(m.asize).toBe(raidzAsize(sectors * SECTOR, dcols, np));
          const used: number[] = [];
          for (const c of m.cols) for (let k = 0; k < c.size / SECTOR; k++) used.push((c.offset / SECTOR + k) * dcols + c.devidx);
          const set = new Set(used);
          expect(set.size).toBe(used.length);
          for (const p of used) expect(p >= b && p < b + m.asize / SECTOR).toBe(true);
          expect(used.length + m.nskip).toBe(m.asize / SECTOR);
          expect(new Set(m.cols.map((c) => c.devidx)).size).toBe(m.cols.length);
          let data = 0;
          for (let c = np; c < m.acols; c++) data += m.cols[c]!.size;
          expect(data).toBe(sectors * SECTOR);
          // parity columns are as long as the longest column
          for (let c = 0; c < m.acols; c++) expect(m.cols[c]!.size).toBeLessThanOrEqual(m.cols[0]!.size);
        },
      ),
    );
  });
});

describe('reconstruct', () => {
  it('rebuilds any <= nparity erased columns exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 1, max: 24 }),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        (np, extra, sectors, seedBytes, picks) => {
          const dcols = np + 1 + extra;
          const m = raidzMap(0, sectors * SECTOR, dcols, np);
          const data = Buffer.alloc(sectors * SECTOR);
          for (let i = 0; i < data.length; i++) data[i] = seedBytes[i % 64]! ^ ((i * 2654435761) >>> 24);
          const dataCols = splitData(m, data);
          const full = [...generateParity(dataCols, m.cols[0]!.size, np), ...dataCols];
          const k = Math.min(np, m.acols, picks.length);
          const erase = [...new Set(picks.slice(0, k).map((p) => p % m.acols))];
          const cols: (Buffer | undefined)[] = full.map((b, c) => (erase.includes(c) ? undefined : b));
          reconstruct(m, cols, erase);
          cols.forEach((b, c) => expect(b!.equals(full[c]!)).toBe(true));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('works on misaligned column buffers (views at odd offsets)', () => {
    const m = raidzMap(0, 9 * SECTOR, 6, 3);
    const data = Buffer.alloc(9 * SECTOR);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    const dataCols = splitData(m, data);
    const full = [...generateParity(dataCols, m.cols[0]!.size, 3), ...dataCols];
    const odd = (b: Buffer): Buffer => {
      const big = Buffer.alloc(b.length + 3);
      b.copy(big, 1);
      return big.subarray(1, 1 + b.length);
    };
    const par = generateParity(dataCols.map(odd), m.cols[0]!.size, 3);
    par.forEach((p, j) => expect(p.equals(full[j]!)).toBe(true));
    const cols: (Buffer | undefined)[] = full.map(odd);
    const erase = [0, 3, 5];
    for (const c of erase) cols[c] = undefined;
    reconstruct(m, cols, erase);
    cols.forEach((b, c) => expect(b!.equals(full[c]!)).toBe(true));
  });

  it('refuses more erasures than parity', () => {
    const m = raidzMap(0, 8 * SECTOR, 5, 1);
    expect(() => reconstruct(m, [], [1, 2])).toThrow(RangeError);
  });
});
