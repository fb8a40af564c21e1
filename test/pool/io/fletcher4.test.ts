import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { FLETCHER4_SIMD_WASM, FLETCHER4_WASM, fletcher4, fletcher4HasSimd, fletcher4HasWasm, fletcher4Js, fletcher4Simd, fletcher4Wasm } from '../../../src/pool/io/fletcher4.js';

/**
 * The definition, transcribed literally (zfs_fletcher.c, fletcher_4_native):
 * uint64 a, b, c, d mod 2^64 over little-endian uint32 words; result is
 * a, b, c, d as little-endian uint64. Slow (BigInt) and obviously right.
 */
function reference(data: Uint8Array): Buffer {
  const M = (1n << 64n) - 1n;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let a = 0n, b = 0n, c = 0n, d = 0n;
  for (let i = 0; i < data.length; i += 4) {
    a = (a + BigInt(dv.getUint32(i, true))) & M;
    b = (b + a) & M;
    c = (c + b) & M;
    d = (d + c) & M;
  }
  const out = Buffer.alloc(32);
  out.writeBigUInt64LE(a, 0);
  out.writeBigUInt64LE(b, 8);
  out.writeBigUInt64LE(c, 16);
  out.writeBigUInt64LE(d, 24);
  return out;
}

/** Deterministic pseudo-random bytes (xorshift32), so vectors are reproducible. */
function pattern(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const impls = [
  ['default', fletcher4],
  ['js', fletcher4Js],
  ...(fletcher4HasWasm ? [['wasm', fletcher4Wasm] as const] : []),
  // The four-lane SIMD module takes multiples of 16 bytes only (every block is whole sectors).
  ...(fletcher4HasSimd ? [['simd', (d: Uint8Array, o?: Buffer) => (d.length % 16 === 0 ? fletcher4Simd(d, o) : fletcher4Wasm(d, o))] as const] : []),
] as const;

describe('fletcher4', () => {
  it('has WebAssembly on this Node, and the module validates', () => {
    expect(fletcher4HasWasm).toBe(true);
    expect(WebAssembly.validate(FLETCHER4_WASM)).toBe(true);
    expect(fletcher4HasSimd).toBe(true);
    expect(WebAssembly.validate(FLETCHER4_SIMD_WASM)).toBe(true);
  });

  it('the SIMD lanes combine to the definition at every multiple of 16 up to 1 KiB, and refuse other lengths', () => {
    const data = pattern(1024, 12345);
    for (let n = 0; n <= 1024; n += 16) expect(fletcher4Simd(data.subarray(0, n)), `${n} bytes`).toEqual(reference(data.subarray(0, n)));
    expect(() => fletcher4Simd(Buffer.alloc(20))).toThrow(RangeError);
  });

  it('small vectors worked by hand from the recurrence', () => {
    // words 1, 2: a = 3, b = 1 + 3 = 4, c = 1 + 4 = 5, d = 1 + 5 = 6
    const w = Buffer.from([1, 0, 0, 0, 2, 0, 0, 0]);
    const expected = Buffer.alloc(32);
    [3n, 4n, 5n, 6n].forEach((v, i) => expected.writeBigUInt64LE(v, i * 8));
    for (const [, f] of impls) expect(f(w)).toEqual(expected);
    for (const [, f] of impls) expect(f(Buffer.alloc(0))).toEqual(Buffer.alloc(32));
    expect(reference(w)).toEqual(expected);
  });

  // Lengths around the wasm 16-byte unroll, the 64-byte ZFS split, sectors,
  // block sizes, and the 256 KiB wasm window (and past it).
  const lengths = [4, 8, 12, 16, 20, 28, 60, 64, 68, 508, 512, 4096, 16384, 131072, 262144, 262148, 1 << 20];

  it.each(lengths)('random data, %i bytes, matches the definition', (n) => {
    const data = pattern(n, n * 2654435761);
    const want = reference(data);
    for (const [, f] of impls) expect(f(data)).toEqual(want);
  });

  it.each([512, 4096, 131072, 1 << 20])('all-0xFF data wraps mod 2^64 (%i bytes)', (n) => {
    // 128 KiB of 0xFF overflows c and d (zfs_fletcher.c works this out with bc).
    const data = Buffer.alloc(n, 0xff);
    const want = reference(data);
    // Unreduced d = f n(n+1)(n+2)(n+3)/24 exceeds 2^64 from 128 KiB on, so the wrap is exercised.
    const w = BigInt(n / 4);
    if (n >= 131072) expect((0xffffffffn * w * (w + 1n) * (w + 2n) * (w + 3n)) / 24n).toBeGreaterThan(1n << 64n);
    for (const [, f] of impls) expect(f(data)).toEqual(want);
  });

  it('fixed vector: 128 KiB of 0xFF', () => {
    // Closed forms for constant words f = 2^32-1 over n words:
    // a = n f, b = f n(n+1)/2, c = f n(n+1)(n+2)/6, d = f n(n+1)(n+2)(n+3)/24, all mod 2^64.
    const n = 32768n, f = 0xffffffffn, M = (1n << 64n) - 1n;
    const expected = Buffer.alloc(32);
    expected.writeBigUInt64LE((n * f) & M, 0);
    expected.writeBigUInt64LE(((f * n * (n + 1n)) / 2n) & M, 8);
    expected.writeBigUInt64LE(((f * n * (n + 1n) * (n + 2n)) / 6n) & M, 16);
    expected.writeBigUInt64LE(((f * n * (n + 1n) * (n + 2n) * (n + 3n)) / 24n) & M, 24);
    for (const [, f4] of impls) expect(f4(Buffer.alloc(131072, 0xff))).toEqual(expected);
  });

  it('unaligned views and views into larger buffers', () => {
    const big = randomBytes(9000);
    for (const off of [0, 1, 2, 3, 5]) {
      const view = big.subarray(off, off + 4096);
      const want = reference(Buffer.from(view));
      for (const [, f] of impls) expect(f(view)).toEqual(want);
    }
  });

  it('does not leak state between calls', () => {
    const a = pattern(300000, 7);
    const b = pattern(4096, 9);
    const wantB = reference(b);
    for (const [, f] of impls) {
      f(a);
      expect(f(b)).toEqual(wantB);
    }
  });

  it('rejects lengths that are not a multiple of 4', () => {
    for (const [, f] of impls) expect(() => f(Buffer.alloc(5))).toThrow(RangeError);
  });

  it('fast paths equal the reference (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.constantFrom(0, 0xff, -1), (arr, fill) => {
        const data = Buffer.from(arr.subarray(0, arr.length & ~3));
        if (fill >= 0) data.fill(fill, 0, data.length >>> 1);
        const want = reference(data);
        for (const [, f] of impls) expect(f(data)).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });
});
