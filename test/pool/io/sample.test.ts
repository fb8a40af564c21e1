import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { fletcher4, fletcher4HasSimd, fletcher4Sampled } from '../../../src/pool/io/fletcher4.js';
import { looksIncompressible, sampleSpan, SAMPLE_LEN, SAMPLE_SKEW } from '../../../src/pool/io/sample.js';
import { prepareBlock } from '../../../src/pool/io/prepare.js';

/** Blocks whose sample lands on both sides of the entropy limit, with and without repeats. */
function shaped(len: number, kind: number, seed: Buffer): Buffer {
  const d = Buffer.alloc(len);
  for (let i = 0; i < len; i++) d[i] = seed[i % seed.length]! ^ ((i * 2654435761) >>> 13);
  switch (kind) {
    case 1: // 7 bits per byte: exactly at the limit, judged compressible
      for (let i = 0; i < len; i++) d[i]! &= 0x7f;
      break;
    case 2: // every other byte zero
      for (let i = 0; i < len; i += 2) d[i] = 0;
      break;
    case 3: { // one sample repeated at a later sample position
      const { stride, count } = sampleSpan(len);
      const k = 1 + (seed[0]! % (count - 1));
      d.copy(d, SAMPLE_SKEW + k * stride, SAMPLE_SKEW, SAMPLE_SKEW + SAMPLE_LEN);
      break;
    }
    case 4: // one bit in four cleared: ~7.4 bits, judged incompressible
      for (let i = 0; i < len; i++) if (i % 4 === 0) d[i]! &= 0xbf;
      break;
  }
  return d;
}

describe('compressibility sample', () => {
  it('finds a repeated sample whatever its fingerprint (the sign bug)', () => {
    // Before the fix, a fingerprint with its top bit set never matched the stored copy: half of
    // these repeats went unnoticed. 64 trials miss it with probability 2^-64.
    for (let t = 0; t < 64; t++) {
      const d = randomBytes(16384);
      d.copy(d, SAMPLE_SKEW + 5 * 512, SAMPLE_SKEW, SAMPLE_SKEW + SAMPLE_LEN);
      expect(looksIncompressible(d)).toBe(false);
    }
  });

  it('sample spans stay inside the block', () => {
    for (const len of [8192, 8208, 12288, 16384, 65536, 131072, 1 << 20, 16 << 20]) {
      const { stride, count } = sampleSpan(len);
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThanOrEqual(32);
      expect(SAMPLE_SKEW + (count - 1) * stride + SAMPLE_LEN).toBeLessThanOrEqual(len);
    }
    expect(sampleSpan(8191).count).toBe(0);
  });
});

describe.runIf(fletcher4HasSimd)('fletcher4Sampled (the wasm sample fused with the checksum)', () => {
  it('agrees with looksIncompressible and fletcher4 on every kind of block', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(
        fc.integer({ min: 8192 / 16, max: (256 * 1024) / 16 }),
        fc.integer({ min: 0, max: 4 }),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        (len16, kind, seed) => {
          const d = shaped(len16 * 16, kind, Buffer.from(seed));
          const verdict = looksIncompressible(d);
          seen.add(`${kind}:${verdict}`);
          const got = fletcher4Sampled(d);
          if (verdict) expect(got && got.equals(fletcher4(d))).toBe(true);
          else expect(got).toBeNull();
        },
      ),
      { numRuns: 400 },
    );
    // Both verdicts were exercised, so a sample that always agreed one way could not pass.
    expect([...seen].some((s) => s.endsWith('true'))).toBe(true);
    expect([...seen].some((s) => s.endsWith('false'))).toBe(true);
  });

  it('declines what it does not handle', () => {
    expect(fletcher4Sampled(randomBytes(4096))).toBeUndefined(); // too small to judge
    expect(fletcher4Sampled(randomBytes(16388))).toBeUndefined(); // not a multiple of 16
    expect(fletcher4Sampled(randomBytes(512 * 1024))).toBeUndefined(); // beyond one window
  });

  it('prepareBlock stores an incompressible block as is, with its checksum', () => {
    const d = randomBytes(16384);
    const p = prepareBlock(d, 'lz4', 'fletcher4', false)!;
    expect(p.comp).toBe('off');
    expect(p.phys).toBe(d);
    expect(p.cksum.equals(fletcher4(d))).toBe(true);
    const text = Buffer.alloc(16384, 'the same words again and again ');
    const q = prepareBlock(text, 'lz4', 'fletcher4', false)!;
    expect(q.comp).toBe('lz4');
    expect(q.cksum.equals(fletcher4(q.phys))).toBe(true);
  });
});
