/**
 * Allocation's metadata reserve: runs held back by admission so a sync can
 * place its indirect and MOS blocks on a pool whose free space is cut into
 * holes smaller than a metadata block.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Allocation, META_BLOCK } from '../../../src/pool/io/allocate.js';
import { newPool, tempDir } from '../engine/helpers.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';

const MiB = 1024 * 1024;
const K16 = 16 * 1024;

function setup(size = 64 * MiB): Allocation {
  const leaf = new MemoryLeaf('aa', 'mem0', size);
  const top = new SingleVdev(leaf, { id: 0, config: { type: 'file', guid: 'aa', path: 'mem0' } });
  return new Allocation([top]);
}

/** Allocate 16K data blocks until none fits; returns them in allocation order. */
function fillWithData(a: Allocation): { offset: number; asize: number }[] {
  const out: { offset: number; asize: number }[] = [];
  for (;;) {
    try {
      out.push(a.alloc(K16, 1, 1, true)[0]!);
    } catch {
      return out;
    }
  }
}

describe('metadata reserve', () => {
  it('holds whole metadata-block runs as allocated space and gives them back', () => {
    const a = setup();
    expect(a.metaRun()).toBe(META_BLOCK);
    expect(a.holdMeta(3 * META_BLOCK + 1)).toBe(true);
    expect(a.reservedForMeta()).toBe(4 * META_BLOCK);
    expect(a.allocated()).toBe(4 * META_BLOCK);
    a.releaseMeta(META_BLOCK);
    expect(a.reservedForMeta()).toBe(META_BLOCK);
    a.releaseMeta(0);
    expect(a.reservedForMeta()).toBe(0);
    expect(a.allocated()).toBe(0);
  });

  it('data never gets the reserve; metadata that finds no room is carved out of it', () => {
    const a = setup(32 * MiB);
    expect(a.holdMeta(4 * META_BLOCK)).toBe(true);
    const data = fillWithData(a);
    // Every byte but the reserve went to data.
    expect(data.length * K16 + a.reservedForMeta()).toBe(a.capacity());
    // Free every other data block: plenty of free bytes, no run a 48K block fits.
    for (let i = 0; i < data.length; i += 2) a.allocators[0]!.free(data[i]!.offset, K16);
    expect(a.allocators[0]!.maxFreeRun()).toBe(K16);
    expect(() => a.alloc(48 * 1024, 2, 2, true)).toThrow(/out of space/);
    // As metadata, both copies come out of the reserve, disjoint: the first uses up a run,
    // the second fits in what is left of it.
    const dvas = a.alloc(48 * 1024, 2, 2, true, true);
    expect(dvas).toHaveLength(2);
    expect(a.reservedForMeta()).toBe(3 * META_BLOCK);
    expect(a.heldForMeta()).toBe(3 * META_BLOCK + 32 * 1024);
    const [x, y] = dvas;
    expect(x!.offset + x!.asize <= y!.offset || y!.offset + y!.asize <= x!.offset).toBe(true);
    // The whole runs still serve maximal metadata blocks.
    expect(a.alloc(META_BLOCK, 2, 2, true, true)).toHaveLength(2);
    expect(a.reservedForMeta()).toBe(META_BLOCK);
    expect(a.alloc(META_BLOCK, 1, 2, true, true)).toHaveLength(1);
    // Exhausted: metadata fails cleanly too.
    expect(a.reservedForMeta()).toBe(0);
    expect(() => a.alloc(META_BLOCK, 2, 2, true, true)).toThrow(/out of space/);
  });

  it('only whole runs count as held: what is left of a carved run serves smaller blocks, uncounted', () => {
    const a = setup(32 * MiB);
    expect(a.holdMeta(2 * META_BLOCK)).toBe(true);
    const data = fillWithData(a);
    for (let i = 0; i < data.length; i += 2) a.allocators[0]!.free(data[i]!.offset, K16);
    const dataBytes = (data.length - Math.ceil(data.length / 2)) * K16;
    // A 96K block uses up a whole run; the 32K left of it is an extra, not held room.
    a.alloc(96 * 1024, 1, 2, true, true);
    expect(a.reservedForMeta()).toBe(META_BLOCK);
    expect(a.heldForMeta()).toBe(META_BLOCK + 32 * 1024);
    // A block that fits the extra takes it before cutting the last whole run.
    a.alloc(32 * 1024, 1, 2, true, true);
    expect(a.reservedForMeta()).toBe(META_BLOCK);
    expect(a.heldForMeta()).toBe(META_BLOCK);
    // Two copies of a 96K block: the first from the last run, the second finds nothing;
    // the failed allocation gives its first copy back, nothing stays allocated for it.
    expect(() => a.alloc(96 * 1024, 2, 2, true, true)).toThrow(/out of space/);
    expect(a.allocated()).toBe(dataBytes + 96 * 1024 + 32 * 1024 + a.heldForMeta());
    expect(a.reservedForMeta()).toBe(0);
    // Holding again counts only whole runs: the 32K left over does not pass for a 128K run.
    expect(a.heldForMeta()).toBe(32 * 1024);
    expect(a.holdMeta(META_BLOCK)).toBe(false);
    a.releaseMeta(0);
    expect(a.heldForMeta()).toBe(0);
    expect(a.allocated()).toBe(dataBytes + 96 * 1024 + 32 * 1024);
  });

  it('refuses (keeping what it got) when the pool has no whole run left', () => {
    const a = setup(32 * MiB);
    const data = fillWithData(a);
    for (let i = 0; i < data.length; i += 2) a.allocators[0]!.free(data[i]!.offset, K16);
    const free = a.capacity() - a.allocated();
    expect(free).toBeGreaterThan(8 * META_BLOCK);
    expect(a.holdMeta(META_BLOCK)).toBe(false);
    expect(a.reservedForMeta()).toBe(0);
  });

  it('takes its runs away from where data is being laid down', () => {
    const a = setup(256 * MiB);
    const first = a.alloc(K16, 1, 1, true)[0]!;
    expect(a.holdMeta(META_BLOCK)).toBe(true);
    const next = a.alloc(K16, 1, 1, true)[0]!;
    // The data stream stays contiguous across the reservation.
    expect(next.offset).toBe(first.offset + K16);
  });

  it('is not data: pool list ALLOC leaves it out, and a synced idle pool holds none', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { mgr, pool } = await newPool(dir, { size: 96 * MiB, dirtyMax: 64 * MiB });
      await mgr.create('tank/v', { volsize: String(64 * MiB), sparse: true, props: { volblocksize: '4096' } });
      const { volume, release } = await mgr.openVolume('tank/v');
      const before = (await mgr.poolList(['tank']))[0]!.alloc;
      // Writes under all 16 level-1 blocks (4 MiB each at 4K), in the open txg: two copies of each held.
      for (let i = 0; i < 64; i++) await volume.write(i * MiB, randomBytes(4096));
      expect(pool.alloc.heldForMeta()).toBeGreaterThanOrEqual(2 * 16 * META_BLOCK);
      const during = (await mgr.poolList(['tank']))[0]!.alloc;
      expect(during - before).toBeLessThan(MiB);
      await volume.flush();
      await pool.commit();
      expect(pool.alloc.heldForMeta()).toBe(0);
      release();
      await mgr.close();
    } finally {
      await cleanup();
    }
  });
});

describe('space-map records', () => {
  it('adjacent allocations and frees of a txg log as one run each; order and gaps are kept', () => {
    const a = setup();
    const d = Array.from({ length: 4 }, () => a.alloc(K16, 1, 5, true)[0]!);
    for (let i = 1; i < 4; i++) expect(d[i]!.offset).toBe(d[i - 1]!.offset + d[i - 1]!.asize); // sequential
    a.freeDvas([d[0]!], 5, true);
    a.freeDvas([d[1]!], 5, true);
    a.freeDvas([d[3]!], 5, true); // not adjacent to d[1]
    const e = a.alloc(K16, 1, 5, true)[0]!; // after a free: a new alloc record even if adjacent to d[3]
    a.alloc(K16, 1, 6, true); // another txg
    const r = a.takeRecords(5);
    expect(r.map(({ op, offset, length }) => [op, offset, length])).toEqual([
      ['alloc', d[0]!.offset, 4 * d[0]!.asize],
      ['free', d[0]!.offset, 2 * d[0]!.asize],
      ['free', d[3]!.offset, d[3]!.asize],
      ['alloc', e.offset, e.asize],
    ]);
    expect(a.takeRecords(6)).toHaveLength(1);
  });
});
