import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { StorageError } from '../../../src/errors.js';
import {
  COMPRESSIONS, MAX_BLOCK_SIZE, PAYLOAD_HEADER, type Compression,
  compressBlock, decompressBlock, isAllZero, looksIncompressible, parseCompression,
} from '../../../src/pool/io/compress.js';
import { deflateSync } from 'node:zlib';

const ALGS = COMPRESSIONS.filter((a) => a !== 'off');

/** Text-like data: compresses well with lz4/gzip, has no zero runs for zle. */
function compressible(n: number): Buffer {
  const words = ['block ', 'pointer ', 'txg ', 'uberblock ', 'vdev ', 'zio ', 'arc ', 'dnode '];
  const out = Buffer.alloc(n);
  let off = 0;
  let i = 0;
  while (off < n) off += out.write(words[(i++ * 7) % words.length]!, off);
  return out;
}

/** Half zeros, half random: what zle is for. */
function halfZero(n: number): Buffer {
  const out = Buffer.alloc(n);
  randomBytes(n >>> 1).copy(out, 0);
  return out;
}

/** Byte equality; vitest's toEqual walks big Buffers element by element (slow). */
function expectBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

function expectEIO(f: () => unknown): void {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(StorageError);
  expect((thrown as StorageError).code).toBe('EIO');
}

describe('parseCompression', () => {
  it('accepts every algorithm and the ZFS aliases', () => {
    for (const a of COMPRESSIONS) expect(parseCompression(a)).toBe(a);
    expect(parseCompression('gzip')).toBe('gzip-6');
    expect(parseCompression('on')).toBe('lz4');
  });
  it('rejects bad values with EINVAL', () => {
    for (const bad of ['', 'gzip-0', 'gzip-10', 'LZ4', 'zstd', 'lzjb', 'gzip-']) {
      try {
        parseCompression(bad);
        expect.unreachable(bad);
      } catch (e) {
        expect((e as StorageError).code).toBe('EINVAL');
      }
    }
  });
});

describe('compressBlock / decompressBlock', () => {
  const sizes = [512, 4096, 16384, 131072];
  const datasets: [string, (n: number) => Buffer][] = [
    ['random', (n) => randomBytes(n)],
    ['compressible', compressible],
    ['all-zero', (n) => Buffer.alloc(n)],
    ['half-zero', halfZero],
  ];

  for (const alg of ALGS) {
    for (const [name, gen] of datasets) {
      it(`${alg} round-trips ${name} data`, () => {
        for (const n of sizes) {
          for (const sector of [512, 4096]) {
            const data = gen(n);
            const payload = compressBlock(alg, data, sector);
            if (payload === null) {
              // Stored uncompressed: only allowed when compression cannot pay off.
              if (name === 'all-zero' && n >= 2 * sector) throw new Error(`${alg} ${n} zeros not compressed`);
              continue;
            }
            expect(payload.length % sector).toBe(0);
            const lphys = Math.ceil(n / sector) * sector;
            expect(payload.length).toBeLessThanOrEqual(lphys - lphys / 8);
            expectBytes(decompressBlock(alg, payload, n), data);
          }
        }
      });
    }
  }

  it('random data is never stored compressed', () => {
    for (const alg of ALGS) expect(compressBlock(alg, randomBytes(16384))).toBeNull();
  });

  it('compressible data saves space with every algorithm but zle', () => {
    for (const alg of ALGS) {
      const p = compressBlock(alg, compressible(16384));
      if (alg === 'zle') expect(p).toBeNull();
      else expect(p!.length).toBeLessThanOrEqual(8192);
    }
  });

  it('half-zero data compresses with zle', () => {
    const data = halfZero(16384);
    const p = compressBlock('zle', data)!;
    expect(p.length).toBe(12288);
    expectBytes(decompressBlock('zle', p, 16384), data);
  });

  it('a block of one sector never compresses (nothing to save)', () => {
    for (const alg of ALGS) expect(compressBlock(alg, Buffer.alloc(4096), 4096)).toBeNull();
  });

  it('one-byte and tiny blocks round-trip or stay uncompressed', () => {
    for (const alg of ALGS) {
      for (const data of [Buffer.from([0]), Buffer.from([0x5a]), Buffer.alloc(64, 1)]) {
        const p = compressBlock(alg, data, 1);
        if (p) expectBytes(decompressBlock(alg, p, data.length), data);
      }
    }
    expect(compressBlock('lz4', Buffer.alloc(0))).toBeNull();
  });

  it('off stores the data itself', () => {
    const data = randomBytes(4096);
    expect(compressBlock('off', data)).toBeNull();
    expect(decompressBlock('off', data, 4096)).toBe(data);
    expectBytes(decompressBlock('off', Buffer.concat([data, Buffer.alloc(512)]), 4096), data);
    expectEIO(() => decompressBlock('off', data, 8192));
  });

  it('padding past the header length is ignored', () => {
    for (const alg of ALGS) {
      const data = compressible(65536);
      data.fill(0, 0, 20000);
      const p = compressBlock(alg, data, 512)!;
      const padded = Buffer.concat([p, Buffer.alloc(4096, 0xee)]);
      expectBytes(decompressBlock(alg, padded, data.length), data);
    }
  });

  it('rejects a bad sector size and oversized blocks', () => {
    expect(() => compressBlock('lz4', Buffer.alloc(4096), 0)).toThrow(StorageError);
    expect(() => compressBlock('lz4', Buffer.alloc(MAX_BLOCK_SIZE + 4))).toThrow(StorageError);
  });
});

describe('corrupt payloads throw EIO', () => {
  const n = 16384;
  const data = compressible(n);
  data.fill(0, 4000, 9000);

  for (const alg of ALGS) {
    it(`${alg}: header, length and stream damage`, () => {
      const good = compressBlock(alg, data)!;
      expect(good).not.toBeNull();
      const clen = good.readUInt32LE(0);

      expectEIO(() => decompressBlock(alg, Buffer.alloc(0), n));
      expectEIO(() => decompressBlock(alg, good.subarray(0, 3), n));
      // header larger than the payload, zero, huge
      for (const h of [good.length, 0, 0xffffffff]) {
        const bad = Buffer.from(good);
        bad.writeUInt32LE(h, 0);
        expectEIO(() => decompressBlock(alg, bad, n));
      }
      // truncated stream (header still says clen)
      expectEIO(() => decompressBlock(alg, good.subarray(0, PAYLOAD_HEADER + clen - 1), n));
      // header shorter than the real stream
      const short = Buffer.from(good);
      short.writeUInt32LE(Math.max(1, clen >>> 1), 0);
      expectEIO(() => decompressBlock(alg, short, n));
      // wrong lsize, both ways, and absurd ones
      expectEIO(() => decompressBlock(alg, good, n - 512));
      expectEIO(() => decompressBlock(alg, good, n + 512));
      for (const l of [0, -1, 1.5, MAX_BLOCK_SIZE + 1, Infinity, NaN]) expectEIO(() => decompressBlock(alg, good, l));
    });

    it(`${alg}: random damage never crashes; output is either EIO or lsize bytes`, () => {
      const good = compressBlock(alg, data)!;
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }),
          (flips) => {
            const bad = Buffer.from(good);
            for (const [pos, x] of flips) bad[pos % bad.length]! ^= x;
            try {
              expect(decompressBlock(alg, bad, n)).toHaveLength(n);
            } catch (e) {
              expect((e as StorageError).code).toBe('EIO');
            }
          },
        ),
        { numRuns: 200 },
      );
    });

    it(`${alg}: garbage payloads are EIO or lsize bytes`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 1, max: 70000 }), (arr, lsize) => {
          try {
            expect(decompressBlock(alg, Buffer.from(arr), lsize)).toHaveLength(lsize);
          } catch (e) {
            expect((e as StorageError).code).toBe('EIO');
          }
        }),
        { numRuns: 300 },
      );
    });
  }
});

describe('round-trip property', () => {
  it('decompress(compress(x)) = x for every algorithm and sector', () => {
    const block = fc
      .tuple(
        fc.uint8Array({ minLength: 1, maxLength: 20000 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 4000 }), fc.constantFrom(0, 0x41)), { maxLength: 6 }),
      )
      .map(([arr, runs]) => {
        const b = Buffer.from(arr);
        for (const [start, len, v] of runs) b.fill(v, start % b.length, Math.min(b.length, (start % b.length) + len));
        return b;
      });
    fc.assert(
      fc.property(block, fc.constantFrom<Compression>(...ALGS), fc.constantFrom(1, 512, 4096), (data, alg, sector) => {
        const p = compressBlock(alg, data, sector);
        if (p !== null) {
          expect(p.length % sector).toBe(0);
          expectBytes(decompressBlock(alg, p, data.length), data);
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('early abort (looksIncompressible)', () => {
  const repeated = (chunk: number) => {
    const c = randomBytes(chunk);
    return Buffer.concat(Array.from({ length: 16384 / chunk }, () => c));
  };
  const mixed = (randomLen: number) => {
    const b = Buffer.alloc(16384);
    randomBytes(randomLen).copy(b);
    return b;
  };
  const compressedData = () => {
    let z = deflateSync(compressible(200000), { level: 9 });
    while (z.length < 16384) z = Buffer.concat([z, deflateSync(randomBytes(4096))]);
    return z.subarray(0, 16384);
  };

  it('flags random and already-compressed data', () => {
    expect(looksIncompressible(randomBytes(16384))).toBe(true);
    expect(looksIncompressible(randomBytes(131072))).toBe(true);
    expect(looksIncompressible(compressedData())).toBe(true);
  });

  it('never flags data that lz4 shrinks enough', () => {
    const cases: [string, Buffer][] = [
      ['text', compressible(16384)],
      ['all-zero', Buffer.alloc(16384)],
      ['half-zero', halfZero(16384)],
      ['10K random + 6K zeros', mixed(10240)],
      ['random 4K repeated', repeated(4096)],
      ['random 512 repeated', repeated(512)],
    ];
    for (const [name, data] of cases) {
      expect(compressBlock('lz4', data), name).not.toBeNull();
      expect(looksIncompressible(data), name).toBe(false);
      const p = compressBlock('lz4', data, 4096, { earlyAbort: true });
      expect(p, name).not.toBeNull();
      expectBytes(decompressBlock('lz4', p!, data.length), data);
    }
  });

  it('small blocks are not judged', () => {
    expect(looksIncompressible(randomBytes(4096))).toBe(false);
  });

  it('skips lz4 and gzip for random data but not zle', () => {
    const data = randomBytes(16384);
    data.fill(0, 0, 1000);
    expect(compressBlock('lz4', data, 512, { earlyAbort: true })).toBeNull();
    expect(compressBlock('gzip-1', data, 512, { earlyAbort: true })).toBeNull();
    const z = Buffer.alloc(16384);
    randomBytes(4000).copy(z);
    expect(compressBlock('zle', z, 4096, { earlyAbort: true })).not.toBeNull();
  });
});

describe('isAllZero', () => {
  it('finds a single non-zero byte anywhere', () => {
    for (const n of [0, 1, 7, 8, 9, 4096, 65536, 65537, 200000]) {
      const b = Buffer.alloc(n);
      expect(isAllZero(b)).toBe(true);
      for (const pos of [0, n >>> 1, n - 1]) {
        if (n === 0) continue;
        b[pos] = 1;
        expect(isAllZero(b)).toBe(false);
        b[pos] = 0;
      }
    }
  });
  it('works on views', () => {
    const b = Buffer.alloc(10000, 1);
    b.fill(0, 100, 9000);
    expect(isAllZero(b.subarray(100, 9000))).toBe(true);
    expect(isAllZero(b.subarray(99, 9000))).toBe(false);
    expect(isAllZero(new Uint8Array(b.buffer, b.byteOffset + 100, 8900))).toBe(true);
  });
});
