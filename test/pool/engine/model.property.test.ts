/**
 * Property test of a volume against an in-memory model (a Buffer): random
 * sequences of write / writeZeroes / trim / read / flush / grow /
 * export+import. Every read matches the model. After every sync the space
 * map's view of data (logged allocations) equals exactly what the volume's
 * tree references; destroying the volume brings it back to zero, and the
 * pool's allocated space back to where it started (no leak, no double free).
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import type { Pool } from '../../../src/pool/pool.js';
import type { Volume } from '../../../src/volume/volume.js';
import { checkTreeAllocated, loggedAllocated, MiB, readAll, tempDir } from './helpers.js';

type Cmd =
  | { k: 'write'; o: number; n: number; seed: number }
  | { k: 'zero' | 'trim'; o: number; n: number }
  | { k: 'read'; o: number; n: number }
  | { k: 'status'; o: number; n: number }
  | { k: 'flush' }
  | { k: 'sync' }
  | { k: 'grow'; by: number }
  | { k: 'reimport' };

function pattern(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    if (i % 7 === 0) x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 16) & 0xff;
  }
  return b;
}

/** Offsets and lengths in units of 512 (with a byte jitter), biased to block edges. */
const range = fc.tuple(fc.nat(8 * 1024 * 1024 / 512), fc.integer({ min: 1, max: 600 }), fc.integer({ min: -3, max: 3 })).map(([o, n, j]) => ({ o: o * 512 + (j > 0 ? j : 0), n: n * 512 + (j < 0 ? -j : 0) }));

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]) => ({ k: 'write' as const, ...r, seed })) },
  { weight: 2, arbitrary: range.map((r) => ({ k: 'zero' as const, ...r })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(8 * 1024 * 1024), fc.integer({ min: 1, max: 3 * MiB })).map(([o, n]) => ({ k: 'trim' as const, o, n })) },
  { weight: 2, arbitrary: range.map((r) => ({ k: 'read' as const, ...r })) },
  { weight: 1, arbitrary: range.map((r) => ({ k: 'status' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ k: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'sync' as const }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 64 }).map((by) => ({ k: 'grow' as const, by })) },
  { weight: 1, arbitrary: fc.constant({ k: 'reimport' as const }) },
);

async function settle(pool: Pool): Promise<void> {
  // Enough txgs for every deferred free to become allocatable.
  for (let i = 0; i < 3; i++) await pool.commit();
}

describe('volume vs model (fast-check)', () => {
  it('reads match the model; space is exact; destroy returns every block', async () => {
    const { dir, cleanup } = await tempDir('strata-prop-');
    let run = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(4096, 16384, 65536), fc.constantFrom('lz4', 'off'), fc.array(cmd, { minLength: 1, maxLength: 30 }), async (bs, compression, cmds) => {
          const d = join(dir, `run${run++}`);
          const home = join(d, 'home');
          let mgr = new PoolManager(home, { txgTimeoutMs: 60_000, dirtyMax: 8 * MiB });
          await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(d, 'd1.img')] }], createSize: 96 * MiB });
          let pool = await mgr.pool('tank');
          await settle(pool);
          const baseline = pool.alloc.allocated() - pool.alloc.pendingFrees();
          // Just under one indirect block's span (1024 blocks) so that growing crosses it.
          let size = (bs === 65536 ? 130 : 1000) * bs;
          await mgr.create('tank/v', { volsize: String(size), blocksize: String(bs), sparse: true, props: { compression } });
          let opened = await mgr.openVolume('tank/v');
          let vol: Volume = opened.volume;
          let model = Buffer.alloc(size);
          const clamp = (o: number, n: number) => {
            const oo = Math.min(o, size - 1);
            return { o: oo, n: Math.max(1, Math.min(n, size - oo)) };
          };
          const exact = async () => {
            await settle(pool);
            const { bytes } = await checkTreeAllocated(pool, 'tank/v');
            expect(loggedAllocated(pool)).toBe(bytes);
          };
          try {
            for (const c of cmds) {
              switch (c.k) {
                case 'write': {
                  const { o, n } = clamp(c.o, c.n);
                  const data = pattern(c.seed, n);
                  await vol.write(o, data);
                  data.copy(model, o);
                  break;
                }
                case 'zero':
                case 'trim': {
                  const { o, n } = clamp(c.o, c.n);
                  if (c.k === 'zero') await vol.writeZeroes(o, n);
                  else await vol.trim(o, n);
                  model.fill(0, o, o + n);
                  break;
                }
                case 'read': {
                  const { o, n } = clamp(c.o, c.n);
                  expect((await vol.read(o, n)).equals(model.subarray(o, o + n)), `read ${o}+${n}`).toBe(true);
                  break;
                }
                case 'status': {
                  // Extents tile the range in order; holes and zero extents read as zeroes.
                  const { o, n } = clamp(c.o, c.n);
                  const ext = await vol.blockStatus(o, n);
                  expect(ext.length).toBeGreaterThan(0);
                  let at = o;
                  for (const e of ext) {
                    expect(e.offset).toBe(at);
                    expect(e.length).toBeGreaterThan(0);
                    if (e.hole || e.zero) expect(model.subarray(e.offset, e.offset + e.length).equals(Buffer.alloc(e.length)), `extent ${e.offset}+${e.length}`).toBe(true);
                    at += e.length;
                  }
                  expect(at).toBeGreaterThanOrEqual(Math.min(o + n, size));
                  break;
                }
                case 'flush':
                  await vol.flush();
                  break;
                case 'sync':
                  await exact();
                  break;
                case 'grow': {
                  size += c.by * bs;
                  await mgr.set('tank/v', { volsize: String(size) });
                  const m2 = Buffer.alloc(size);
                  model.copy(m2);
                  model = m2;
                  expect(vol.info().size).toBe(size);
                  break;
                }
                case 'reimport': {
                  opened.release();
                  await mgr.poolExport('tank');
                  mgr = new PoolManager(home, { txgTimeoutMs: 60_000, dirtyMax: 8 * MiB });
                  await mgr.poolImport('tank', d);
                  pool = await mgr.pool('tank');
                  opened = await mgr.openVolume('tank/v');
                  vol = opened.volume;
                  expect(vol.info().size).toBe(size);
                  break;
                }
              }
            }
            expect((await readAll(vol)).equals(model)).toBe(true);
            await exact();
            await mgr.destroy('tank/v', { force: true });
            await settle(pool);
            expect(loggedAllocated(pool)).toBe(0);
            // Only metadata growth (history, space map log) remains.
            const after = pool.alloc.allocated() - pool.alloc.pendingFrees();
            expect(after - baseline).toBeLessThan(MiB);
            expect(after - baseline).toBeGreaterThanOrEqual(-64 * 1024);
          } finally {
            await mgr.close();
          }
        }),
        { numRuns: 25 },
      );
    } finally {
      await cleanup();
    }
  });
});
