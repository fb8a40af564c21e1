import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { zleDecode, zleEncode } from '../../../src/pool/io/zle.js';

function roundTrip(src: Buffer): Buffer {
  const enc = Buffer.alloc(src.length * 2 + 16);
  const n = zleEncode(src, enc);
  expect(n).toBeGreaterThanOrEqual(0);
  const out = Buffer.alloc(src.length);
  expect(zleDecode(enc.subarray(0, n), out)).toBe(true);
  return out;
}

describe('zle', () => {
  it('encodes per the chunk definition (n = 64)', () => {
    const enc = Buffer.alloc(64);
    // 3 literals, then 5 zeros: [2, a, b, c] [5 - 1 + 64]
    let n = zleEncode(Buffer.from([7, 8, 9, 0, 0, 0, 0, 0]), enc);
    expect([...enc.subarray(0, n)]).toEqual([2, 7, 8, 9, 68]);
    // a lone zero stays inside the literal run
    n = zleEncode(Buffer.from([1, 0, 2]), enc);
    expect([...enc.subarray(0, n)]).toEqual([2, 1, 0, 2]);
    // 192 zeros is one chunk (b = 255), 193 is two
    n = zleEncode(Buffer.alloc(192), enc);
    expect([...enc.subarray(0, n)]).toEqual([255]);
    n = zleEncode(Buffer.alloc(193), enc);
    expect([...enc.subarray(0, n)]).toEqual([255, 64]);
  });

  it('splits literal runs at 64 bytes', () => {
    const src = Buffer.alloc(65, 1);
    const enc = Buffer.alloc(100);
    const n = zleEncode(src, enc);
    expect(n).toBe(1 + 64 + 1 + 1);
    expect(enc[0]).toBe(63);
    expect(enc[65]).toBe(0);
  });

  it('gives up (-1) when the output does not fit', () => {
    expect(zleEncode(Buffer.alloc(100, 1), Buffer.alloc(50))).toBe(-1);
    expect(zleEncode(Buffer.alloc(1000), Buffer.alloc(5))).toBe(-1);
    expect(zleEncode(Buffer.alloc(1000), Buffer.alloc(6))).toBe(6);
  });

  it('decodes the ZFS format and rejects malformed streams', () => {
    const out = Buffer.alloc(8);
    expect(zleDecode(Buffer.from([2, 7, 8, 9, 68]), out)).toBe(true);
    expect([...out]).toEqual([7, 8, 9, 0, 0, 0, 0, 0]);
    expect(zleDecode(Buffer.from([2, 7, 8]), Buffer.alloc(3))).toBe(false); // literals past input end
    expect(zleDecode(Buffer.from([70]), Buffer.alloc(3))).toBe(false); // zeros past output end
    expect(zleDecode(Buffer.from([64]), Buffer.alloc(3))).toBe(false); // output short
    expect(zleDecode(Buffer.from([64, 64, 64, 64]), Buffer.alloc(3))).toBe(false); // trailing input
  });

  it('round-trips arbitrary data (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), (arr, zeros) => {
        const src = Buffer.from(arr);
        src.fill(0, zeros % (src.length + 1), Math.min(src.length, (zeros % (src.length + 1)) + 500));
        expect(roundTrip(src)).toEqual(src);
      }),
      { numRuns: 500 },
    );
  });
});
