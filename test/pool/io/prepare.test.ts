/**
 * Blocks prepared in an arena (inline or on a worker thread) must be
 * byte-for-byte what prepareBlock() makes on the main thread: same holes,
 * same compression, same padding, same checksums.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ChecksumId, CompressId } from '../../../src/pool/blkptr.js';
import { ARENA_BLOCKS, ARENA_BYTES, fillArena, prepareBlock, prepareInArena, readArena, type Prepared } from '../../../src/pool/io/prepare.js';
import { PrepareWorkers } from '../../../src/pool/io/prepare-workers.js';

interface Item {
  data: Buffer;
  comp: CompressId;
  cksum: ChecksumId;
  noHole?: boolean;
}

function sampleItems(n: number): Item[] {
  const comps: CompressId[] = ['lz4', 'off', 'zle', 'gzip-1', 'lz4'];
  const kinds = [
    (len: number) => randomBytes(len),
    (len: number) => Buffer.alloc(len),
    (len: number) => Buffer.from('strata block text '.repeat(Math.ceil(len / 18)).slice(0, len)),
    (len: number) => {
      const b = Buffer.alloc(len);
      randomBytes(len >> 2).copy(b, len >> 1);
      return b;
    },
  ];
  const sizes = [16384, 4096, 512, 1536, 131072, 16384];
  return Array.from({ length: n }, (_, i) => ({
    data: kinds[i % kinds.length]!(sizes[i % sizes.length]!),
    comp: comps[i % comps.length]!,
    cksum: (i % 3 === 2 ? 'sha256' : 'fletcher4') as ChecksumId,
    noHole: i % 7 === 3,
  }));
}

function same(got: (Prepared | null)[], items: Item[]): void {
  items.forEach((it, i) => {
    const want = prepareBlock(it.data, it.comp, it.cksum, it.noHole);
    const g = got[i]!;
    if (!want) return expect(g, `block ${i}`).toBeNull();
    expect(g, `block ${i}`).not.toBeNull();
    expect(g.comp, `block ${i} comp`).toBe(want.comp);
    expect(g.psize, `block ${i} psize`).toBe(want.psize);
    expect(g.phys.equals(want.phys), `block ${i} phys`).toBe(true);
    expect(g.cksum.equals(want.cksum), `block ${i} cksum`).toBe(true);
  });
}

describe('prepare arenas', () => {
  it('inline: prepareInArena gives what prepareBlock gives', () => {
    const items = sampleItems(40);
    const sab = new SharedArrayBuffer(ARENA_BYTES);
    fillArena(sab, items);
    prepareInArena(sab, items.length);
    same(readArena(sab, items.map((it) => it.data)), items);
  });

  it('refuses more blocks than an arena holds', () => {
    const sab = new SharedArrayBuffer(ARENA_BYTES);
    const items = Array.from({ length: ARENA_BLOCKS + 1 }, () => ({ data: Buffer.alloc(512), comp: 'off' as const, cksum: 'fletcher4' as const }));
    expect(() => fillArena(sab, items)).toThrow(/at most/);
  });

  it('worker thread: same bytes as the main thread, arenas reused', async () => {
    const w = PrepareWorkers.start(1);
    // npm test builds dist/ first, so the worker entry exists: its absence is a failure here.
    expect(w?.available).toBe(true);
    try {
      for (let round = 0; round < 3; round++) {
        const items = sampleItems(60);
        const sab = w!.arena();
        fillArena(sab, items);
        await w!.run(sab, items.length);
        same(readArena(sab, items.map((it) => it.data)), items);
        w!.release(sab);
      }
    } finally {
      await w!.close();
    }
    // A closed set refuses jobs (the pipeline then prepares inline).
    await expect(w!.run(w!.arena(), 0)).rejects.toThrow(/unavailable/);
  });
});
