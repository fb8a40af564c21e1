/**
 * Property-based test of native snapshots against an in-memory model
 * (model-lib.mjs): random sequences of writes, trims, zeroes, snapshots,
 * clones, promotes, rollbacks, destroys, renames, holds and export/import.
 * After every step every volume, clone and snapshot reads exactly what the
 * model says and every refusal is the model's; at check points the space
 * map's data bytes equal what the trees reach; after destroying everything
 * the pool's data space is zero.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { PoolManager } from '../../../src/daemon/services.js';
import type { Pool } from '../../../src/pool/pool.js';
import { MiB, tempDir } from '../engine/helpers.js';
import { checkDiff, checkSpace, compareState, type ModelLike } from './check.js';
// @ts-expect-error plain JS module shared with the crash child
import { Model, execute, POOL } from './model-lib.mjs';

type Op = Record<string, unknown> & { t: string };
type Action = Record<string, unknown> & { k: string };

const idx = fc.nat({ max: 63 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('create'), size: fc.constantFrom(1 * MiB, 2 * MiB), bs: fc.constantFrom(4096, 8192, 16384) }), weight: 2 },
  {
    arbitrary: fc.record({
      t: fc.constant('write'),
      v: idx,
      off: fc.double({ min: 0, max: 0.999, noNaN: true }),
      len: fc.integer({ min: 1, max: 160 * 1024 }),
      seed: fc.nat(),
      z: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
      trim: fc.boolean(),
    }),
    weight: 8,
  },
  { arbitrary: fc.record({ t: fc.constant('snap'), v: idx, n: fc.nat({ max: 5 }) }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('snap'), v: idx, bad: fc.nat({ max: 2 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('clone'), s: idx }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('promote'), v: idx }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('resize'), v: idx, f: fc.constantFrom(0.3, 0.5, 0.9, 1.25, 1.5, 2) }), weight: 2 },
  // Large zeroing requests take the engine's range path (only allocated blocks are touched).
  {
    arbitrary: fc.record({ t: fc.constant('write'), v: idx, off: fc.double({ min: 0, max: 0.999, noNaN: true }), len: fc.integer({ min: 300_000, max: 2 * 1024 * 1024 }), seed: fc.nat(), z: fc.constant(true), trim: fc.boolean() }),
    weight: 2,
  },
  { arbitrary: fc.record({ t: fc.constant('rollback'), s: idx, r: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('dsnap'), s: idx, R: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('dsnap'), s: idx, R: fc.boolean(), span: fc.integer({ min: 1, max: 4 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('dvol'), v: idx, r: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('rsnap'), s: idx, n: fc.nat({ max: 5 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('rvol'), v: idx, n: fc.nat({ max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constantFrom('hold', 'release'), s: idx, tag: fc.constantFrom('keep', 'backup') }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('reopen'), how: fc.constantFrom('close', 'export') }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('check') }), weight: 2 },
);

interface Run {
  budget?: number;
  mgr: PoolManager;
  pool: Pool;
  home: string;
  dir: string;
}

async function reopen(run: Run, how: string): Promise<void> {
  if (how === 'export') {
    await run.mgr.poolExport(POOL);
    await run.mgr.close();
    run.mgr = new PoolManager(run.home, { txgTimeoutMs: 60_000, destroyTxgBudget: run.budget });
    await run.mgr.poolImport(POOL, run.dir);
  } else {
    await run.mgr.close();
    run.mgr = new PoolManager(run.home, { txgTimeoutMs: 60_000, destroyTxgBudget: run.budget });
  }
  run.pool = await run.mgr.pool(POOL);
}

/** Destroy everything the model has, in dependency order (release holds, clones before origins). */
async function destroyAll(run: Run, model: ModelLike & { apply(a: Action): string | null }, log: string[]): Promise<void> {
  for (const [n, v] of model.vols) {
    for (const s of v.snaps) {
      for (const tag of [...s.holds]) {
        const a = { k: 'release', snap: `${n}@${s.name}`, tag };
        log.push(JSON.stringify(a));
        expect(model.apply(a)).toBe(null);
        expect(await execute({ mgr: run.mgr }, a)).toBe(null);
      }
    }
  }
  while (model.vols.size) {
    const free = model.volNames().find((n) => model.vols.get(n)!.snaps.every((s) => model.clonesOf(s).length === 0));
    expect(free, 'some volume has no dependent clones').toBeDefined();
    const a = { k: 'dvol', name: free!, r: true };
    log.push(JSON.stringify(a));
    expect(model.apply(a)).toBe(null);
    expect(await execute({ mgr: run.mgr }, a)).toBe(null);
  }
}

async function runSequence(ops: Op[], opts: { checkEvery?: boolean; budget?: number } = {}): Promise<void> {
  const { dir, cleanup } = await tempDir('strata-snapmodel-');
  const log: string[] = [];
  try {
    const home = join(dir, 'home');
    const mgr = new PoolManager(home, { txgTimeoutMs: 60_000, destroyTxgBudget: opts.budget });
    await mgr.poolCreate(POOL, { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 256 * MiB });
    const run: Run = { mgr, pool: await mgr.pool(POOL), home, dir, budget: opts.budget };
    const model = new Model() as ModelLike & { resolve(o: Op): Action | null; apply(a: Action): string | null };
    // Always start with a volume so the sequence has something to act on.
    for (const op of [{ t: 'create', size: 2 * MiB, bs: 8192 } as Op, ...ops]) {
      const a = model.resolve(op);
      if (!a) continue;
      log.push(JSON.stringify(a));
      const expected = model.apply(a);
      if (a.k === 'reopen') await reopen(run, String(a['how']));
      // destroy -n's "would reclaim" is exactly what the destroy frees (no clones involved).
      let dry: { reclaim: number; before: number } | null = null;
      if (a.k === 'dsnap' && expected === null && !a['R']) {
        await run.pool.txg.syncNow();
        const r = await run.mgr.destroySnapshots(String(a['snap']), { dryRun: true });
        dry = { reclaim: r.reclaim, before: run.pool.logged.reduce((n, x) => n + x.allocatedBytes(), 0) };
      }
      const got = await execute({ mgr: run.mgr }, a);
      if (dry && got === null) {
        const freed = dry.before - run.pool.logged.reduce((n, x) => n + x.allocatedBytes(), 0);
        if (freed !== dry.reclaim) throw new Error(`step ${log.length}: ${JSON.stringify(a)}: destroy -n said ${dry.reclaim} bytes, it freed ${freed}\n${log.join('\n')}`);
      }
      if (got !== expected) throw new Error(`step ${log.length}: ${JSON.stringify(a)}: engine ${got ?? 'succeeded'}, model ${expected ?? 'succeeds'}\n${log.join('\n')}`);
      const problems = await compareState(run.pool, model);
      // Space after every administrative step (those sync anyway; writes stay batched in open txgs between them).
      if (!['write', 'zero', 'trim'].includes(a.k) || opts.checkEvery) problems.push(...(await checkSpace(run.pool)));
      if (a.k === 'check') problems.push(...(await checkDiff(run.mgr, run.pool, model)));
      if (problems.length) throw new Error(`after step ${log.length} ${JSON.stringify(a)}:\n  ${problems.join('\n  ')}\nsequence:\n${log.join('\n')}`);
    }
    {
      const p = await checkSpace(run.pool);
      if (p.length) throw new Error(`before destroy-all:\n  ${p.join('\n  ')}\nsequence:\n${log.join('\n')}`);
    }
    await destroyAll(run, model, log);
    await run.pool.txg.syncNow();
    const logged = run.pool.logged.map((a) => a.allocatedBytes());
    if (logged.some((x) => x !== 0)) throw new Error(`data space after destroying everything: ${logged} (expected 0)\nsequence:\n${log.join('\n')}`);
    // And still zero after an import (the space map on disk agrees).
    await reopen(run, 'close');
    const again = run.pool.logged.map((a) => a.allocatedBytes());
    if (again.some((x) => x !== 0)) throw new Error(`data space after re-import: ${again}\nsequence:\n${log.join('\n')}`);
    await run.mgr.close();
  } finally {
    await cleanup();
  }
}

const RUNS = Number(process.env['SNAP_MODEL_RUNS'] ?? 60);

describe('native snapshots against a model', () => {
  it('random sequences read, refuse and free exactly as the model says', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 60 }), fc.boolean(), async (ops, small) => {
        // Half the runs split multi-snapshot destroys into a txg per snapshot.
        await runSequence(ops, { budget: small ? 1 : undefined });
      }),
      { numRuns: RUNS, endOnFailure: !!process.env['SNAP_MODEL_NOSHRINK'], ...(process.env['SNAP_MODEL_SEED'] ? { seed: Number(process.env['SNAP_MODEL_SEED']) } : {}) },
    );
  }, 600_000);

  it('a hand-written sequence: destroying a middle snapshot keeps the blocks the previous one holds', async () => {
    const w = (seed: number, off: number, len: number): Op => ({ t: 'write', v: 0, off, len, seed, z: false, trim: false });
    await runSequence([w(1, 0, 200_000), { t: 'snap', v: 0, n: 0 }, { t: 'snap', v: 0, n: 1 }, w(2, 0, 200_000), { t: 'dsnap', s: 1, R: false }, w(3, 0, 300_000), { t: 'reopen', how: 'close' }]);
  });

  it('a hand-written sequence: a range of neighbours destroyed in one pass and in one txg each', async () => {
    const w = (seed: number, off: number, len: number): Op => ({ t: 'write', v: 0, off, len, seed, z: false, trim: false });
    const ops: Op[] = [];
    for (let i = 0; i < 6; i++) ops.push(w(10 + i, (i % 3) * 0.1, 150_000), { t: 'snap', v: 0, n: i });
    ops.push(w(99, 0, 400_000), { t: 'dsnap', s: 1, R: false, span: 3 } as Op, { t: 'check' }, { t: 'rollback', s: 0, r: true }, { t: 'check' });
    for (const budget of [undefined, 1]) await runSequence(ops, { checkEvery: true, budget });
  });

  it('a hand-written sequence: clone, promote, destroy the old parent, rollback', async () => {
    const ops: Op[] = [
      { t: 'write', v: 0, off: 0, len: 300_000, seed: 1, z: false, trim: false },
      { t: 'snap', v: 0, n: 0 },
      { t: 'write', v: 0, off: 0.2, len: 100_000, seed: 2, z: false, trim: false },
      { t: 'snap', v: 0, n: 1 },
      { t: 'clone', s: 1 },
      { t: 'write', v: 0, off: 0.5, len: 50_000, seed: 3, z: false, trim: false },
      { t: 'check' },
      { t: 'promote', v: 0 }, // c1 (sorted first) promoted
      { t: 'check' },
      { t: 'dvol', v: 1, r: true },
      { t: 'rollback', s: 0, r: true },
      { t: 'check' },
    ];
    await runSequence(ops, { checkEvery: true });
  });
});
