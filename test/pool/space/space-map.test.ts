import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SpaceAllocator } from '../../../src/pool/space/allocator.js';
import {
  ctz,
  condense,
  decodeSpaceMapBlock,
  encodeSpaceMapBlock,
  replaySpaceMap,
  shouldCondense,
  SPACE_MAP_HEADER_SIZE,
  spaceMapBlockBound,
  type SpaceRecord,
} from '../../../src/pool/space/space-map.js';
import { StorageError } from '../../../src/errors.js';

const SECTOR = 4096;

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof StorageError) return e.code;
    throw e;
  }
}

const recordArb: fc.Arbitrary<SpaceRecord> = fc
  .record({
    op: fc.constantFrom('alloc' as const, 'free' as const),
    // mixes of tiny, sector-aligned and huge values exercise the unit shift and both entry forms
    unitShift: fc.constantFrom(0, 9, 12, 17),
    off: fc.oneof(fc.nat(1000), fc.nat(2 ** 20), fc.integer({ min: 2 ** 30, max: 2 ** 35 })),
    run: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 2 ** 15 }), fc.integer({ min: 2 ** 15, max: 2 ** 16 })),
    txg: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.constant(2 ** 40 + 7), fc.constant(Number.MAX_SAFE_INTEGER)),
    vdev: fc.option(fc.integer({ min: 0, max: 0xfffffe }), { nil: undefined, freq: 3 }),
  })
  .map(({ op, unitShift, off, run, txg, vdev }) => {
    const r: SpaceRecord = { op, offset: off * 2 ** unitShift, length: run * 2 ** unitShift, txg };
    if (vdev !== undefined) r.vdev = vdev;
    return r;
  });

describe('ctz', () => {
  it('counts trailing zero bits of any safe integer as the bit-by-bit loop does, capped at 30', () => {
    const slow = (n: number) => {
      let c = 0;
      while (c < 30 && n % 2 === 0) {
        n /= 2;
        c++;
      }
      return c;
    };
    for (const n of [1, 2, 3, 512, 4096, 16384, 2 ** 31, 2 ** 32, 3 * 2 ** 32, 2 ** 40 + 2 ** 35, 2 ** 52, Number.MAX_SAFE_INTEGER, 0]) expect(ctz(n)).toBe(slow(n));
    fc.assert(fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 40 }), (a, k) => {
      const n = Math.min(Number.MAX_SAFE_INTEGER, a * 2 ** k);
      if (!Number.isSafeInteger(n)) return;
      expect(ctz(n)).toBe(slow(n));
    }));
  });
});

describe('space map codec', () => {
  it('round-trips any records exactly', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 60, size: 'max' }), (recs) => {
        const buf = encodeSpaceMapBlock(recs);
        expect(buf.length).toBeLessThanOrEqual(spaceMapBlockBound(recs.length));
        expect(decodeSpaceMapBlock(buf)).toEqual(recs);
        // padding to a block size is allowed
        expect(decodeSpaceMapBlock(Buffer.concat([buf, Buffer.alloc(100)]))).toEqual(recs);
      }),
      { numRuns: 500 },
    );
  });

  it('uses one word per typical record plus one per txg change', () => {
    const recs: SpaceRecord[] = [];
    for (let i = 0; i < 100; i++) recs.push({ op: i % 3 ? 'alloc' : 'free', offset: i * 16384 + 2 ** 40, length: 16384, txg: 9 });
    expect(encodeSpaceMapBlock(recs).length).toBe(SPACE_MAP_HEADER_SIZE + 8 + 100 * 8);
  });

  it('rejects malformed records with EINVAL', () => {
    const base: SpaceRecord = { op: 'alloc', offset: 0, length: 4096, txg: 1 };
    expect(codeOf(() => encodeSpaceMapBlock([{ ...base, length: 0 }]))).toBe('EINVAL');
    expect(codeOf(() => encodeSpaceMapBlock([{ ...base, offset: -4096 }]))).toBe('EINVAL');
    expect(codeOf(() => encodeSpaceMapBlock([{ ...base, txg: 1.5 }]))).toBe('EINVAL');
    expect(codeOf(() => encodeSpaceMapBlock([{ ...base, vdev: 2 ** 24 }]))).toBe('EINVAL');
    expect(codeOf(() => encodeSpaceMapBlock([{ ...base, op: 'trim' as never }]))).toBe('EINVAL');
  });

  it('decoding damaged blocks either throws EFAULT or returns well-formed records', () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 1, maxLength: 20, size: 'max' }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (recs, where, xor) => {
          const buf = Buffer.from(encodeSpaceMapBlock(recs));
          buf[where % buf.length]! ^= xor;
          let out: SpaceRecord[];
          try {
            out = decodeSpaceMapBlock(buf);
          } catch (e) {
            expect(e).toBeInstanceOf(StorageError);
            expect((e as StorageError).code).toBe('EFAULT');
            return;
          }
          // Undetectable here (the block pointer checksum catches it), but never malformed.
          for (const r of out) {
            expect(Number.isSafeInteger(r.offset + r.length)).toBe(true);
            expect(r.length).toBeGreaterThan(0);
          }
        },
      ),
      { numRuns: 500 },
    );
    const ok = encodeSpaceMapBlock([{ op: 'alloc', offset: 0, length: 4096, txg: 1 }]);
    expect(codeOf(() => decodeSpaceMapBlock(ok.subarray(0, ok.length - 1)))).toBe('EFAULT');
    expect(codeOf(() => decodeSpaceMapBlock(Buffer.alloc(8)))).toBe('EFAULT');
    expect(codeOf(() => decodeSpaceMapBlock(Buffer.alloc(64)))).toBe('EFAULT');
  });
});

type Op = { k: 'alloc'; n: number } | { k: 'free'; pick: number } | { k: 'sync' };

describe('space map replay and condense', () => {
  it('replay(encode(log)) and replay(condense) reproduce the allocator', () => {
    const cap = 300 * SECTOR;
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            { weight: 5, arbitrary: fc.record({ k: fc.constant('alloc' as const), n: fc.integer({ min: 1, max: 20 }) }) },
            { weight: 4, arbitrary: fc.record({ k: fc.constant('free' as const), pick: fc.nat() }) },
            { weight: 1, arbitrary: fc.record({ k: fc.constant('sync' as const) }) },
          ),
          { maxLength: 250, size: 'max' },
        ),
        fc.nat(200),
        (ops, condenseAt) => {
          const a = new SpaceAllocator({ capacity: cap, sector: SECTOR, metaslabShift: 16 });
          // The log as the pool writes it: one block per txg. `tail` restarts after a condense.
          const blocks: Buffer[] = [];
          let tail: Buffer[] | null = null;
          let condensed: Buffer | null = null;
          let txg = 1;
          let pending: SpaceRecord[] = [];
          const live: [number, number][] = [];
          const sync = () => {
            const b = encodeSpaceMapBlock(pending);
            blocks.push(b);
            tail?.push(b);
            pending = [];
            txg++;
          };
          ops.forEach((op, i) => {
            if (op.k === 'alloc') {
              const off = a.alloc(op.n * SECTOR);
              if (off >= 0) {
                live.push([off, op.n * SECTOR]);
                pending.push({ op: 'alloc', offset: off, length: op.n * SECTOR, txg });
              }
            } else if (op.k === 'free') {
              if (live.length === 0) return;
              const [off, len] = live.splice(op.pick % live.length, 1)[0]!;
              a.free(off, len);
              pending.push({ op: 'free', offset: off, length: len, txg });
            } else {
              sync();
            }
            if (i === condenseAt) {
              sync();
              condensed = encodeSpaceMapBlock(condense(a, txg));
              tail = [];
            }
          });
          sync();
          const want = [...a.allocatedExtents()];

          const b = new SpaceAllocator({ capacity: cap, sector: SECTOR, metaslabShift: 16 });
          replaySpaceMap(b, blocks.map(decodeSpaceMapBlock));
          expect([...b.allocatedExtents()]).toEqual(want);
          expect(b.allocatedBytes()).toBe(a.allocatedBytes());

          const c = new SpaceAllocator({ capacity: cap, sector: SECTOR, metaslabShift: 16 });
          replaySpaceMap(c, [condense(a, txg)]);
          expect([...c.allocatedExtents()]).toEqual(want);

          if (condensed) {
            // condensed log at some txg + everything logged after it
            const d = new SpaceAllocator({ capacity: cap, sector: SECTOR, metaslabShift: 16 });
            replaySpaceMap(d, [condensed, ...tail!].map(decodeSpaceMapBlock));
            expect([...d.allocatedExtents()]).toEqual(want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('routes records by vdev when given several allocators', () => {
    const mk = () => new SpaceAllocator({ capacity: 1 << 26, sector: SECTOR });
    const [a0, a1] = [mk(), mk()];
    a0.alloc(8192);
    a1.alloc(4096);
    a1.alloc(4096);
    const log = [...condense(a0, 3, 0), ...condense(a1, 3, 1)];
    const [b0, b1] = [mk(), mk()];
    replaySpaceMap([b0, b1], [decodeSpaceMapBlock(encodeSpaceMapBlock(log))]);
    expect([...b0.allocatedExtents()]).toEqual([[0, 8192]]);
    expect([...b1.allocatedExtents()]).toEqual([[0, 8192]]);
    expect(codeOf(() => replaySpaceMap([mk()], [log]))).toBe('EFAULT');
  });

  it('an inconsistent log fails the load with EFAULT', () => {
    const mk = () => new SpaceAllocator({ capacity: 1 << 26, sector: SECTOR });
    const alloc = (offset: number, length: number, txg = 1): SpaceRecord => ({ op: 'alloc', offset, length, txg });
    const free = (offset: number, length: number, txg = 1): SpaceRecord => ({ op: 'free', offset, length, txg });
    expect(codeOf(() => replaySpaceMap(mk(), [[alloc(0, 8192)], [alloc(4096, 4096)]]))).toBe('EFAULT');
    expect(codeOf(() => replaySpaceMap(mk(), [[alloc(0, 8192), free(0, 8192), free(0, 4096)]]))).toBe('EFAULT');
    expect(codeOf(() => replaySpaceMap(mk(), [[alloc(1 << 26, 4096)]]))).toBe('EFAULT');
    expect(codeOf(() => replaySpaceMap(mk(), [[alloc(512, 4096)]]))).toBe('EFAULT');
  });

  it('shouldCondense once the log is well past twice the extent list', () => {
    const a = new SpaceAllocator({ capacity: 1 << 30, sector: SECTOR });
    for (let i = 0; i < 100; i++) a.alloc(16384);
    expect(condense(a, 1)).toHaveLength(1);
    expect(shouldCondense(10, a)).toBe(false);
    expect(shouldCondense(1000, a)).toBe(true);
  });
});
