import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PoolManager } from '../../../src/daemon/services.js';
import type { Pool, PoolOptions } from '../../../src/pool/pool.js';
import { bpAsize, type BlockPointer } from '../../../src/pool/blkptr.js';
import { BlockTree } from '../../../src/pool/object/tree.js';

export const MiB = 1024 * 1024;

export async function tempDir(prefix = 'strata-engine-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A manager with one single-device pool `tank` on a sparse file in dir. */
export async function newPool(dir: string, opts: PoolOptions & { size?: number } = {}): Promise<{ mgr: PoolManager; pool: Pool; home: string; device: string }> {
  const home = join(dir, 'home');
  const device = join(dir, 'd1.img');
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000, ...opts });
  await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [device] }], createSize: opts.size ?? 128 * MiB });
  return { mgr, pool: await mgr.pool('tank'), home, device };
}

/** Data bytes the space map says are allocated (metadata is not logged there). */
export function loggedAllocated(pool: Pool): number {
  return pool.logged.reduce((n, a) => n + a.allocatedBytes(), 0);
}

/**
 * Check a volume's committed tree against the allocator: every block it
 * reaches is allocated (so no later allocation can overwrite live data), and
 * the dataset's `referenced` equals the tree's allocated size.
 */
export async function checkTreeAllocated(pool: Pool, name: string): Promise<{ blocks: number; bytes: number }> {
  const { rec, obj } = pool.objectOf(name);
  let blocks = 0;
  let bytes = 0;
  const bad: string[] = [];
  await new BlockTree(pool.io).walkAll(obj.dnode, (bp: BlockPointer) => {
    blocks++;
    bytes += bpAsize(bp);
    for (const d of bp.dvas) {
      // isAllocated() means "any byte allocated": check sector by sector.
      const a = pool.alloc.allocators[d.vdev]!;
      for (let o = d.offset; o < d.offset + d.asize; o += 4096) if (!a.isAllocated(o, 4096)) bad.push(`${d.vdev}:${o}`);
    }
  });
  if (bad.length) throw new Error(`${name}: ${bad.length} live blocks are free in the allocator (first ${bad.slice(0, 3).join(', ')})`);
  if (rec.referenced !== bytes) throw new Error(`${name}: referenced ${rec.referenced} but its tree holds ${bytes} bytes`);
  return { blocks, bytes };
}

/** Read a whole volume in 1 MiB pieces. */
export async function readAll(vol: { info(): { size: number }; read(o: number, n: number): Promise<Buffer> }): Promise<Buffer> {
  const size = vol.info().size;
  const out = Buffer.alloc(size);
  for (let o = 0; o < size; o += MiB) (await vol.read(o, Math.min(MiB, size - o))).copy(out, o);
  return out;
}

/** Write random data over a volume's first `bytes` (whole MiB) in 1 MiB pieces, flush, and return what was written (the model later writes update). */
export async function fillWithModel(vol: { write(o: number, d: Buffer): Promise<void>; flush(): Promise<void> }, bytes: number): Promise<Buffer> {
  const model = Buffer.alloc(bytes);
  for (let off = 0; off < bytes; off += MiB) {
    const d = randomBytes(MiB);
    await vol.write(off, d);
    d.copy(model, off);
  }
  await vol.flush();
  return model;
}

/**
 * `count` random 4K writes of random data by 32 writers at once (depth 32),
 * applied to `model` too. Writer w owns the sectors s with s % 32 === w, so
 * the model's order is each writer's own. Then a flush.
 */
export async function randomOverwritesAtDepth32(
  vol: { write(o: number, d: Buffer): Promise<void>; flush(): Promise<void> },
  model: Buffer,
  count: number,
  seed: number,
): Promise<void> {
  const r = rng(seed);
  const sectors = model.length / 4096;
  let left = count;
  const writer = async (w: number) => {
    while (left-- > 0) {
      const off = (r.below(sectors / 32) * 32 + w) * 4096;
      const d = randomBytes(4096);
      await vol.write(off, d);
      d.copy(model, off);
    }
  };
  await Promise.all(Array.from({ length: 32 }, (_, w) => writer(w)));
  await vol.flush();
}

/** The volume reads back as `model`, compared 4 MiB at a time (a mismatch names its chunk). */
export async function expectModel(vol: { read(o: number, n: number): Promise<Buffer> }, model: Buffer): Promise<void> {
  for (let off = 0; off < model.length; off += 4 * MiB) {
    const n = Math.min(4 * MiB, model.length - off);
    expect((await vol.read(off, n)).equals(model.subarray(off, off + n)), `at ${off}`).toBe(true);
  }
}

/** Small deterministic PRNG (xorshift32) for reproducible tests. */
export function rng(seed: number): { next(): number; below(n: number): number; bytes(n: number): Buffer } {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  return {
    next,
    below: (n: number) => next() % n,
    bytes: (n: number) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}
