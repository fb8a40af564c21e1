import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RangeTree } from '../../../src/pool/space/range-tree.js';

const U = 4096; // universe of units; big enough for trees hundreds of nodes deep in rotations

/** Model: one byte per unit, 1 = in the set. */
function segmentsOf(bits: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  let i = 0;
  while (i < bits.length) {
    if (!bits[i]) {
      i++;
      continue;
    }
    const s = i;
    while (i < bits.length && bits[i]) i++;
    out.push([s, i]);
  }
  return out;
}

function modelFirstFit(bits: Uint8Array, from: number, len: number): number {
  // lowest p >= from with [p, p+len) all set
  let run = 0;
  for (let i = from; i < bits.length; i++) {
    run = bits[i] ? run + 1 : 0;
    if (run >= len) return i - len + 1;
  }
  return -1;
}

/** Start of the first segment at or after `from` (else the first anywhere) with len <= length < below, or -1. */
function modelFitBelow(segs: [number, number][], from: number, len: number, below: number): number {
  const ok = ([s, e]: [number, number]) => e - s >= len && e - s < below;
  return (segs.find((g) => g[0] >= from && ok(g)) ?? segs.find(ok))?.[0] ?? -1;
}

describe('RangeTree against a bitmap model', () => {
  it('add/remove keep segments maximal and every query agrees with the model', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.nat(U - 1), fc.integer({ min: 1, max: 40 }), fc.nat(U - 1), fc.integer({ min: 1, max: 30 })), {
          minLength: 50,
          maxLength: 600,
          size: 'max',
        }),
        (ops) => {
          const t = new RangeTree();
          const bits = new Uint8Array(U);
          for (const [isAdd, at, n0, probe, len] of ops) {
            const n = Math.min(n0, U - at);
            const segs = segmentsOf(bits);
            if (isAdd) {
              // add only the part of [at, at+n) that is absent, as the allocator would
              let i = at;
              while (i < at + n) {
                if (bits[i]) {
                  i++;
                  continue;
                }
                const s = i;
                while (i < at + n && !bits[i]) i++;
                expect(t.overlaps(s, i)).toBe(false);
                t.add(s, i);
                bits.fill(1, s, i);
              }
            } else {
              // remove the part of a present segment that [at, at+n) covers
              const seg = segs.find(([s, e]) => s < at + n && at < e);
              if (seg) {
                const a = Math.max(seg[0], at);
                const b = Math.min(seg[1], at + n);
                expect(t.contains(a, b)).toBe(true);
                t.remove(a, b);
                bits.fill(0, a, b);
              }
            }
            const now = segmentsOf(bits);
            expect(t.count).toBe(now.length);
            expect(t.space).toBe(bits.reduce((x, y) => x + y, 0));
            expect(t.maxLength()).toBe(now.reduce((m, [s, e]) => Math.max(m, e - s), 0));
            expect(t.firstFit(probe, len)).toBe(modelFirstFit(bits, probe, len));
            const below = len + (probe % 17);
            expect(t.firstFitBelow(probe, len, below, Infinity)).toBe(modelFitBelow(now, probe, len, below));
            const pn = Math.min(len, U - probe);
            expect(t.overlaps(probe, probe + pn)).toBe(bits.subarray(probe, probe + pn).includes(1));
            expect(t.contains(probe, probe + pn)).toBe(!bits.subarray(probe, probe + pn).includes(0));
          }
          expect([...t.segments()]).toEqual(segmentsOf(bits));
          // histogram buckets sum to the totals
          expect(t.histCount.reduce((x, y) => x + y, 0)).toBe(t.count);
          expect(t.histSpace.reduce((x, y) => x + y, 0)).toBe(t.space);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('firstFitBelow gives up after its node budget rather than walk every segment', () => {
    const t = new RangeTree();
    // 20k one-unit holes and 20k long runs, interleaved: nothing fits [2, 8), and no subtree
    // is all too small or all too long, so only the budget bounds the search.
    for (let i = 0; i < 20_000; i++) {
      t.add(i * 100, i * 100 + 1);
      t.add(i * 100 + 10, i * 100 + 60);
    }
    t.add(1_999_990, 1_999_994); // the one fit, at the very end
    expect(t.firstFitBelow(0, 2, 8, Infinity)).toBe(1_999_990);
    expect(t.firstFitBelow(0, 2, 8)).toBe(-1);
  });

  it('stays balanced and exact with 500k segments', () => {
    const t = new RangeTree();
    // every other unit: 500k one-unit segments, inserted in increasing order (a treap's worst
    // input for an unbalanced BST)
    for (let i = 0; i < 1_000_000; i += 2) t.add(i, i + 1);
    expect(t.count).toBe(500_000);
    expect(t.maxLength()).toBe(1);
    // fill the gaps from the top down: segments merge until one remains
    for (let i = 999_999; i > 0; i -= 2) t.add(i, i + 1);
    expect(t.count).toBe(1);
    expect([...t.segments()]).toEqual([[0, 1_000_000]]);
    expect(t.maxLength()).toBe(1_000_000);
  });
});
