import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SpaceAllocator } from '../../../src/pool/space/allocator.js';
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

/** The model: one byte per sector, 1 = allocated. */
class Model {
  readonly bits: Uint8Array;
  constructor(
    readonly sectors: number,
    readonly msSectors: number,
  ) {
    this.bits = new Uint8Array(sectors);
  }
  anyAllocated(a: number, n: number): boolean {
    for (let i = a; i < a + n; i++) if (this.bits[i]) return true;
    return false;
  }
  allFree(a: number, n: number): boolean {
    for (let i = a; i < a + n; i++) if (this.bits[i]) return false;
    return true;
  }
  set(a: number, n: number, v: 0 | 1): void {
    this.bits.fill(v, a, a + n);
  }
  /** Does a run of n free sectors exist inside one metaslab? (allocations never span metaslabs) */
  fitExists(n: number): boolean {
    for (let ms = 0; ms < this.sectors; ms += this.msSectors) {
      const end = Math.min(this.sectors, ms + this.msSectors);
      let run = 0;
      for (let i = ms; i < end; i++) {
        run = this.bits[i] ? 0 : run + 1;
        if (run >= n) return true;
      }
    }
    return false;
  }
  allocatedCount(): number {
    let c = 0;
    for (const b of this.bits) c += b;
    return c;
  }
  extents(): [number, number][] {
    const out: [number, number][] = [];
    let i = 0;
    while (i < this.sectors) {
      if (!this.bits[i]) {
        i++;
        continue;
      }
      const s = i;
      while (i < this.sectors && this.bits[i]) i++;
      out.push([s * SECTOR, (i - s) * SECTOR]);
    }
    return out;
  }
}

type Op =
  | { k: 'alloc'; n: number }
  | { k: 'freeLive'; pick: number; cut: number } // free (part of) an allocated extent: always valid
  | { k: 'free'; at: number; n: number } // arbitrary range: may be a double free
  | { k: 'claim'; at: number; n: number }
  | { k: 'probe'; at: number; n: number };

const opArb = (sectors: number): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ k: fc.constant('alloc' as const), n: fc.integer({ min: 1, max: 24 }) }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant('freeLive' as const), pick: fc.nat(), cut: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant('free' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 16 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant('claim' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 16 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant('probe' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 16 }) }),
    },
  );

describe('SpaceAllocator against a sector-bitmap model', () => {
  it('never hands out allocated space, keeps exact accounting, and fails only when nothing fits', () => {
    const sectors = 200; // 25 metaslabs of 8 sectors; the last one is full-sized too
    fc.assert(
      fc.property(fc.array(opArb(sectors), { maxLength: 300, size: 'max' }), fc.constantFrom(15, 16, 17, 20), (ops, msShift) => {
        const a = new SpaceAllocator({ capacity: sectors * SECTOR + 123, sector: SECTOR, metaslabShift: msShift });
        expect(a.capacity).toBe(sectors * SECTOR);
        const m = new Model(sectors, 2 ** (msShift - 12));
        for (const op of ops) {
          switch (op.k) {
            case 'alloc': {
              const off = a.alloc(op.n * SECTOR);
              if (off < 0) {
                expect(m.fitExists(op.n)).toBe(false);
              } else {
                expect(off % SECTOR).toBe(0);
                const s = off / SECTOR;
                expect(s + op.n).toBeLessThanOrEqual(sectors);
                expect(m.anyAllocated(s, op.n)).toBe(false);
                // never crosses a metaslab boundary
                expect(Math.floor(s / m.msSectors)).toBe(Math.floor((s + op.n - 1) / m.msSectors));
                m.set(s, op.n, 1);
              }
              break;
            }
            case 'freeLive': {
              const ext = m.extents();
              if (ext.length === 0) break;
              const [off, len] = ext[op.pick % ext.length]!;
              const s = off / SECTOR;
              const n = len / SECTOR;
              // Half the time the whole merged extent (several allocations at once), else a piece of it.
              const from = op.cut % 2 === 0 ? s : s + (op.cut % n);
              const cnt = op.cut % 2 === 0 ? n : 1 + ((op.cut >> 3) % (s + n - from));
              a.free(from * SECTOR, cnt * SECTOR);
              m.set(from, cnt, 0);
              break;
            }
            case 'free': {
              const n = Math.min(op.n, sectors - op.at);
              const code = codeOf(() => a.free(op.at * SECTOR, n * SECTOR));
              if (!m.bits.subarray(op.at, op.at + n).includes(0)) {
                expect(code).toBeUndefined();
                m.set(op.at, n, 0);
              } else {
                expect(code).toBe('EFAULT');
              }
              break;
            }
            case 'claim': {
              const n = Math.min(op.n, sectors - op.at);
              const code = codeOf(() => a.claim(op.at * SECTOR, n * SECTOR));
              if (m.allFree(op.at, n)) {
                expect(code).toBeUndefined();
                m.set(op.at, n, 1);
              } else {
                expect(code).toBe('EFAULT');
              }
              break;
            }
            case 'probe': {
              const n = Math.min(op.n, sectors - op.at);
              expect(a.isAllocated(op.at * SECTOR, n * SECTOR)).toBe(m.anyAllocated(op.at, n));
              break;
            }
          }
          expect(a.allocatedBytes()).toBe(m.allocatedCount() * SECTOR);
          expect(a.allocatedBytes() + a.freeBytes()).toBe(a.capacity);
        }
        expect([...a.allocatedExtents()]).toEqual(m.extents());
        const f = a.fragmentation();
        expect(f).toBeGreaterThanOrEqual(0);
        expect(f).toBeLessThanOrEqual(100);
      }),
      { numRuns: 300 },
    );
  });

  it('a failed free or claim changes nothing, even when it spans metaslabs', () => {
    const a = new SpaceAllocator({ capacity: 64 * SECTOR, sector: SECTOR, metaslabShift: 15 });
    a.claim(0, 12 * SECTOR); // spans metaslabs 0 and 1
    const before = [...a.allocatedExtents()];
    expect(codeOf(() => a.free(8 * SECTOR, 8 * SECTOR))).toBe('EFAULT'); // 12..16 is free
    expect(codeOf(() => a.claim(10 * SECTOR, 8 * SECTOR))).toBe('EFAULT'); // 10..12 is taken
    expect([...a.allocatedExtents()]).toEqual(before);
    expect(a.allocatedBytes()).toBe(12 * SECTOR);
    a.free(0, 12 * SECTOR);
    expect(a.allocatedBytes()).toBe(0);
    expect([...a.allocatedExtents()]).toEqual([]);
  });
});

describe('SpaceAllocator behaviour', () => {
  it('throws EFAULT on a double free and EINVAL on bad arguments', () => {
    const a = new SpaceAllocator({ capacity: 1 << 26, sector: SECTOR });
    const off = a.alloc(16384);
    a.free(off, 16384);
    expect(codeOf(() => a.free(off, 16384))).toBe('EFAULT');
    expect(codeOf(() => a.free(off + SECTOR, SECTOR))).toBe('EFAULT');
    expect(codeOf(() => a.alloc(1000))).toBe('EINVAL');
    expect(codeOf(() => a.alloc(0))).toBe('EINVAL');
    expect(codeOf(() => a.free(100, SECTOR))).toBe('EINVAL');
    expect(codeOf(() => a.claim(a.capacity, SECTOR))).toBe('EINVAL');
    expect(codeOf(() => new SpaceAllocator({ capacity: 1 << 26, sector: 3000 }))).toBe('EINVAL');
  });

  it('lays allocations of mixed sizes out in allocation order', () => {
    const a = new SpaceAllocator({ capacity: 1 << 30, sector: SECTOR, metaslabShift: 30 });
    let next = 0;
    for (let i = 0; i < 5000; i++) {
      const size = (1 + (i % 4)) * SECTOR; // compressed 16K blocks: 4K..16K
      expect(a.alloc(size)).toBe(next);
      next += size;
    }
    // A hole behind the cursor is not reused while there is room ahead...
    a.free(0, 8 * SECTOR);
    expect(a.alloc(SECTOR)).toBe(next);
    next += SECTOR;
    // ...and the stream continues where it left off.
    expect(a.alloc(4 * SECTOR)).toBe(next);
  });

  it('a metaslab running low fills holes before it cuts into runs; a roomy one stays first-fit', () => {
    const K16 = 4 * SECTOR;
    const ms = 1 << 24;
    const a = new SpaceAllocator({ capacity: ms, sector: SECTOR, metaslabShift: 24 });
    const blocks: number[] = [];
    for (let off = 0; off < ms; off += K16) blocks.push(a.alloc(K16));
    // Free a 1 MiB run at the start, then every 4th block after it: 16K holes behind a run.
    a.free(0, 1 << 20);
    for (let i = 64 + 3; i < blocks.length; i += 4) a.free(blocks[i]!, K16);
    expect(a.freeBytes()).toBeLessThan(0.3 * ms); // low
    // The cursor sits at the end; first-fit would wrap to the 1 MiB run. Holes come first.
    const got = a.alloc(K16);
    expect(got).toBe(blocks[64 + 3]);
    expect(a.alloc(K16)).toBe(blocks[64 + 7]);
    // Blocks of a metadata run or more still take runs.
    expect(a.alloc(128 * 1024)).toBe(0);
    // Roomy (a fresh allocator with the same holes, but 70% free): plain first-fit from the cursor.
    const b = new SpaceAllocator({ capacity: 4 * ms, sector: SECTOR, metaslabShift: 26 });
    for (let off = 0; off < ms; off += K16) b.alloc(K16);
    b.free(K16, K16);
    expect(b.alloc(K16)).toBe(ms);
  });

  it('a vdev running low takes holes in any metaslab before it cuts a run, exact fits first', () => {
    const K16 = 4 * SECTOR;
    const ms = 1 << 24;
    // Four metaslabs; 0-2 filled with 16K blocks, 3 left empty: 25% free, so the vdev is low.
    const a = new SpaceAllocator({ capacity: 4 * ms, sector: SECTOR, metaslabShift: 24 });
    const blocks: number[] = [];
    for (let off = 0; off < 3 * ms; off += K16) blocks.push(a.alloc(K16));
    // Holes in metaslab 1 only: a 32K one first, then 16K ones.
    const at = (i: number) => blocks[i]!;
    const i1 = ms / K16; // first block of metaslab 1
    a.free(at(i1 + 10), 2 * K16);
    a.free(at(i1 + 100), K16);
    a.free(at(i1 + 200), K16);
    a.free(at(i1 + 300), 3 * SECTOR); // shorter than the blocks: never picked for them
    expect(a.freeBytes()).toBeLessThan(0.3 * a.capacity);
    // The active metaslab is 2 (full), the emptiest is 3 (a 16 MiB run): the hole in 1 comes first,
    // one of exactly 16K before the earlier 32K one...
    expect(a.alloc(K16)).toBe(at(i1 + 100));
    expect(a.alloc(K16)).toBe(at(i1 + 200));
    // ...then the 32K hole, cut...
    expect(a.alloc(K16)).toBe(at(i1 + 10));
    expect(a.alloc(K16)).toBe(at(i1 + 11));
    // ...and only with no hole that fits left anywhere, metaslab 3's run.
    expect(a.alloc(K16)).toBe(3 * ms);
    // Runs of keepRun or more never look for holes.
    a.free(at(i1 + 500), 64 * SECTOR);
    expect(a.alloc(128 * 1024)).toBe(3 * ms + K16);
    // A roomy vdev (the same layout, 4x the empty space) stays first-fit from its cursor.
    const b = new SpaceAllocator({ capacity: 16 * ms, sector: SECTOR, metaslabShift: 24 });
    for (let off = 0; off < 3 * ms; off += K16) b.alloc(K16);
    b.free(ms + 100 * K16, K16);
    expect(b.alloc(K16)).toBe(3 * ms);
  });

  it('a block looks for holes only in metaslabs whose holes it surely fits', () => {
    const ms = 1 << 24;
    const a = new SpaceAllocator({ capacity: 4 * ms, sector: SECTOR, metaslabShift: 24 });
    a.claim(0, 3 * ms); // metaslabs 0-2 full, 3 empty: the vdev is low
    a.alloc(SECTOR); // ...and the active metaslab is 3
    // Metaslab 1: ten holes of 9 sectors (too short for 15). Metaslab 2: one hole of 16.
    for (let i = 0; i < 10; i++) a.free(ms + i * 64 * SECTOR, 9 * SECTOR);
    a.free(2 * ms + 128 * SECTOR, 16 * SECTOR);
    // A 15-sector block (a 60K indirect block) goes to the hole in 2, not to 3's run.
    expect(a.alloc(15 * SECTOR)).toBe(2 * ms + 128 * SECTOR);
  });

  it('moves to the emptiest metaslab when the current one is full', () => {
    const ms = 1 << 24;
    const a = new SpaceAllocator({ capacity: 4 * ms, sector: SECTOR, metaslabShift: 24 });
    // Fill most of metaslabs 1 and 3 by claims (as a replay would), leave 2 the emptiest.
    a.claim(ms, ms - 64 * SECTOR);
    a.claim(3 * ms, ms / 2);
    a.claim(2 * ms, ms / 4);
    // Fill metaslab 0 completely through alloc.
    for (let i = 0; i < ms / (1 << 20); i++) expect(a.alloc(1 << 20)).toBe(i << 20);
    const next = a.alloc(1 << 20);
    expect(Math.floor(next / ms)).toBe(2);
    // ...and stays there while it fits.
    expect(a.alloc(1 << 20)).toBe(next + (1 << 20));
  });

  it('returns -1 when free space exists but no contiguous run fits', () => {
    const a = new SpaceAllocator({ capacity: 64 * SECTOR, sector: SECTOR, metaslabShift: 24 });
    const offs: number[] = [];
    for (let i = 0; i < 64; i++) offs.push(a.alloc(SECTOR));
    expect(a.alloc(SECTOR)).toBe(-1);
    for (let i = 0; i < 64; i += 2) a.free(offs[i]!, SECTOR);
    expect(a.freeBytes()).toBe(32 * SECTOR);
    expect(a.alloc(2 * SECTOR)).toBe(-1);
    expect(a.maxFreeRun()).toBe(SECTOR);
    expect(a.fragmentation()).toBe(95); // all free space in 4 KiB pieces
    expect(a.alloc(SECTOR)).toBeGreaterThanOrEqual(0);
  });

  it('reports 0% fragmentation for a fresh pool and more once space is chopped up', () => {
    const a = new SpaceAllocator({ capacity: 1 << 30, sector: SECTOR });
    expect(a.fragmentation()).toBe(0);
    const offs: number[] = [];
    for (let i = 0; i < 20000; i++) offs.push(a.alloc(16384));
    for (let i = 0; i < offs.length; i += 2) a.free(offs[i]!, 16384);
    expect(a.fragmentation()).toBeGreaterThan(0);
  });
});
