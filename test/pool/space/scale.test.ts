/**
 * Scale: hundreds of thousands of allocations and fragments. Asserts only
 * correctness (against a sector bitmap); times are printed, never asserted.
 */
import { describe, expect, it } from 'vitest';
import { SpaceAllocator } from '../../../src/pool/space/allocator.js';
import { condense, decodeSpaceMapBlock, encodeSpaceMapBlock, replaySpaceMap } from '../../../src/pool/space/space-map.js';

const SECTOR = 4096;
const BLK = 16384;

/** Deterministic PRNG so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function rate(ops: number, ms: number): string {
  return `${ops} ops in ${ms.toFixed(0)} ms = ${Math.round(ops / (ms / 1000)).toLocaleString('en-US')} ops/s`;
}

describe('SpaceAllocator at scale', () => {
  it('200k allocations of 16 KiB, random frees, churn and reallocation', () => {
    const capacity = 4 * 1024 ** 3; // 4 GiB: 200k x 16 KiB fills 3.05 GiB of it
    const a = new SpaceAllocator({ capacity, sector: SECTOR });
    const used = new Uint8Array(capacity / SECTOR);
    const mark = (off: number, v: 0 | 1) => {
      const s = off / SECTOR;
      for (let i = s; i < s + BLK / SECTOR; i++) {
        // plain check: expect() per sector would dominate the run time
        if (used[i] !== (v ^ 1)) throw new Error(`sector ${i} is ${used[i]}, expected ${v ^ 1}`);
        used[i] = v;
      }
    };
    const rand = rng(42);
    const live: number[] = [];

    let t = performance.now();
    for (let i = 0; i < 200_000; i++) {
      const off = a.alloc(BLK);
      if (off < 0) throw new Error(`alloc ${i} failed`);
      live.push(off);
    }
    const tAlloc = performance.now() - t;
    for (const off of live) mark(off, 1);
    expect(a.allocatedBytes()).toBe(200_000 * BLK);

    // Free a random half: ~100k free fragments scattered over the metaslabs.
    for (let i = live.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [live[i], live[j]] = [live[j]!, live[i]!];
    }
    const freed = live.splice(0, 100_000);
    t = performance.now();
    for (const off of freed) a.free(off, BLK);
    const tFree = performance.now() - t;
    for (const off of freed) mark(off, 0);
    const frag = a.fragmentation();

    // Steady state: random free + alloc pairs (a COW overwrite workload), 300k ops.
    t = performance.now();
    const churn: number[] = [];
    for (let i = 0; i < 150_000; i++) {
      const k = Math.floor(rand() * live.length);
      const victim = live[k]!;
      a.free(victim, BLK);
      const off = a.alloc(BLK);
      if (off < 0) throw new Error(`churn alloc ${i} failed`);
      live[k] = off;
      churn.push(victim, off);
    }
    const tChurn = performance.now() - t;
    for (let i = 0; i < churn.length; i += 2) {
      mark(churn[i]!, 0);
      mark(churn[i + 1]!, 1);
    }

    // Larger blocks (128K records) must not land on anything live either; if
    // the allocator gives up, no contiguous run that large may exist.
    const BIG = 128 * 1024;
    t = performance.now();
    const big: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const off = a.alloc(BIG);
      if (off < 0) {
        expect(a.maxFreeRun()).toBeLessThan(BIG);
        break;
      }
      big.push(off);
    }
    const tBig = performance.now() - t;
    for (const off of big) {
      for (let s = off / SECTOR; s < (off + BIG) / SECTOR; s++) {
        if (used[s] !== 0) throw new Error(`128K block at ${off} overlaps live sector ${s}`);
        used[s] = 1;
      }
    }

    let model = 0;
    for (const b of used) model += b;
    expect(a.allocatedBytes()).toBe(model * SECTOR);
    expect(a.allocatedBytes() + a.freeBytes()).toBe(a.capacity);

    // Persist and reload: condense, encode, decode, replay.
    t = performance.now();
    const recs = condense(a, 7);
    const buf = encodeSpaceMapBlock(recs);
    const b = new SpaceAllocator({ capacity, sector: SECTOR });
    replaySpaceMap(b, [decodeSpaceMapBlock(buf)]);
    const tReload = performance.now() - t;
    expect([...b.allocatedExtents()]).toEqual([...a.allocatedExtents()]);

    console.log(
      [
        `alloc 16K (empty pool):  ${rate(200_000, tAlloc)}`,
        `free 16K (random):       ${rate(100_000, tFree)}  -> ${a.freeSegmentCount()} free segments, FRAG ${frag}%`,
        `free+alloc churn:        ${rate(300_000, tChurn)}`,
        `alloc 128K (fragmented): ${rate(big.length, tBig)}`,
        `condense+encode+replay:  ${recs.length} extents, ${buf.length} bytes, ${tReload.toFixed(0)} ms`,
      ].join('\n'),
    );
  });

  it('finds the one remaining fit among 250k fragments without scanning them', () => {
    const capacity = 2 * 1024 ** 3;
    const a = new SpaceAllocator({ capacity, sector: SECTOR, metaslabShift: 31 }); // one metaslab, one big tree
    const n = capacity / SECTOR;
    for (let i = 0; i < n; i++) a.alloc(SECTOR);
    // Leave every other sector free except one 8-sector hole near the end.
    const hole = (n - 1000) * SECTOR;
    for (let s = 0; s < n; s += 2) if (s * SECTOR < hole || s * SECTOR >= hole + 8 * SECTOR) a.free(s * SECTOR, SECTOR);
    a.free(hole, 8 * SECTOR);
    expect(a.freeSegmentCount()).toBeGreaterThan(250_000);
    const t = performance.now();
    for (let i = 0; i < 1000; i++) {
      const off = a.alloc(8 * SECTOR);
      expect(off).toBe(hole);
      a.free(off, 8 * SECTOR);
      expect(a.alloc(16 * SECTOR)).toBe(-1);
    }
    console.log(`fit among ${a.freeSegmentCount()} fragments: ${rate(3000, performance.now() - t)}`);
  });
});
