/**
 * Property-based test of snapshots against an in-memory model
 * (model-lib.mjs), once per snapshot strategy (snapmode native, cow, row:
 * every volume of a run is created with it, clones inherit it): random
 * sequences of writes, trims, zeroes, snapshots, clones, promotes,
 * rollbacks, resets to origin, destroys, renames, holds, resizes and
 * export/import. After every step every volume, clone and snapshot reads
 * exactly what the model says (and blockStatus never calls data a hole),
 * and every refusal is the model's (including each strategy's own: cow
 * cannot clone, row cannot promote, neither resizes with snapshots); after
 * every administrative step the space map's data bytes equal what the
 * trees reach, USED adds up (a cow/row snapshot's USED is exactly its own
 * store or layer, and no block is in two of their trees); at check points
 * diff covers every changed block ('M' only for cow/row); after destroying
 * everything the pool's data space is zero, before and after a re-import.
 *
 * Native only: `destroy -n`'s reclaim equals what the destroy frees (it is
 * computed from dead lists; cow and row merge instead).
 *
 * Reproduce: SNAP_MODEL_SEED=<seed printed by fast-check> [SNAP_MODEL_MODES=cow]
 * (runs per strategy: SNAP_MODEL_RUNS, native, and SNAP_MODEL_LAYERED_RUNS).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { PoolManager } from '../../../src/daemon/services.js';
import type { Pool } from '../../../src/pool/pool.js';
import { MiB, tempDir } from '../engine/helpers.js';
import { checkDiff, checkSpace, compareState, type ModelLike } from './check.js';
// @ts-expect-error plain JS module shared with the crash child
import { Model, execute, MODES, POOL } from './model-lib.mjs';

type Mode = 'native' | 'cow' | 'row';

type Op = Record<string, unknown> & { t: string };
type Action = Record<string, unknown> & { k: string };

const idx = fc.nat({ max: 63 });
type Weights = Record<'create' | 'write' | 'snap' | 'badsnap' | 'clone' | 'promote' | 'reset' | 'resize' | 'bigzero' | 'rollback' | 'dsnap' | 'dsnapRange' | 'dvol' | 'rsnap' | 'rvol' | 'hold' | 'reopen' | 'check', number>;

function opArbOf(w: Weights): fc.Arbitrary<Op> {
  return fc.oneof(
    { arbitrary: fc.record({ t: fc.constant('create'), size: fc.constantFrom(1 * MiB, 2 * MiB), bs: fc.constantFrom(4096, 8192, 16384) }), weight: w.create },
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
      weight: w.write,
    },
    { arbitrary: fc.record({ t: fc.constant('snap'), v: idx, n: fc.nat({ max: 5 }) }), weight: w.snap },
    { arbitrary: fc.record({ t: fc.constant('snap'), v: idx, bad: fc.nat({ max: 2 }) }), weight: w.badsnap },
    { arbitrary: fc.record({ t: fc.constant('clone'), s: idx }), weight: w.clone },
    { arbitrary: fc.record({ t: fc.constant('promote'), v: idx }), weight: w.promote },
    { arbitrary: fc.record({ t: fc.constant('reset'), v: idx }), weight: w.reset },
    { arbitrary: fc.record({ t: fc.constant('resize'), v: idx, f: fc.constantFrom(0.3, 0.5, 0.9, 1.25, 1.5, 2) }), weight: w.resize },
    // Large zeroing requests take the engine's range path (only allocated blocks are touched).
    {
      arbitrary: fc.record({ t: fc.constant('write'), v: idx, off: fc.double({ min: 0, max: 0.999, noNaN: true }), len: fc.integer({ min: 300_000, max: 2 * 1024 * 1024 }), seed: fc.nat(), z: fc.constant(true), trim: fc.boolean() }),
      weight: w.bigzero,
    },
    { arbitrary: fc.record({ t: fc.constant('rollback'), s: idx, r: fc.boolean() }), weight: w.rollback },
    { arbitrary: fc.record({ t: fc.constant('dsnap'), s: idx, R: fc.boolean() }), weight: w.dsnap },
    { arbitrary: fc.record({ t: fc.constant('dsnap'), s: idx, R: fc.boolean(), span: fc.integer({ min: 1, max: 4 }) }), weight: w.dsnapRange },
    { arbitrary: fc.record({ t: fc.constant('dvol'), v: idx, r: fc.boolean() }), weight: w.dvol },
    { arbitrary: fc.record({ t: fc.constant('rsnap'), s: idx, n: fc.nat({ max: 5 }) }), weight: w.rsnap },
    { arbitrary: fc.record({ t: fc.constant('rvol'), v: idx, n: fc.nat({ max: 3 }) }), weight: w.rvol },
    { arbitrary: fc.record({ t: fc.constantFrom('hold', 'release'), s: idx, tag: fc.constantFrom('keep', 'backup') }), weight: w.hold },
    { arbitrary: fc.record({ t: fc.constant('reopen'), how: fc.constantFrom('close', 'export') }), weight: w.reopen },
    { arbitrary: fc.record({ t: fc.constant('check') }), weight: w.check },
  );
}

/** The native mix as before the strategies came (plus reset to origin). */
const NATIVE_WEIGHTS: Weights = { create: 2, write: 8, snap: 5, badsnap: 1, clone: 3, promote: 3, reset: 2, resize: 2, bigzero: 2, rollback: 3, dsnap: 3, dsnapRange: 2, dvol: 2, rsnap: 2, rvol: 1, hold: 2, reopen: 1, check: 2 };
/**
 * cow and row: fewer volumes and more writes and snapshots per volume (copy-outs and merges
 * need overwrites between snapshots); the refusals they share with native stay, less often.
 */
const LAYERED_WEIGHTS: Record<'cow' | 'row', Weights> = {
  cow: { create: 1, write: 12, snap: 6, badsnap: 1, clone: 1, promote: 1, reset: 1, resize: 2, bigzero: 2, rollback: 3, dsnap: 4, dsnapRange: 2, dvol: 1, rsnap: 2, rvol: 1, hold: 3, reopen: 1, check: 2 },
  row: { create: 1, write: 12, snap: 6, badsnap: 1, clone: 3, promote: 1, reset: 2, resize: 2, bigzero: 2, rollback: 3, dsnap: 4, dsnapRange: 2, dvol: 1, rsnap: 2, rvol: 1, hold: 3, reopen: 1, check: 2 },
};
const opArbFor = (mode: Mode): fc.Arbitrary<Op> => opArbOf(mode === 'native' ? NATIVE_WEIGHTS : LAYERED_WEIGHTS[mode]);

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

/** What the random runs exercised, per strategy (action kind and result), printed after each property. */
const stats = new Map<Mode, Map<string, number>>();
function tally(mode: Mode, a: Action, got: string | null): void {
  let m = stats.get(mode);
  if (!m) stats.set(mode, (m = new Map()));
  const extra = a.k === 'rollback' && got === null && a['r'] ? '-r' : a.k === 'dsnap' && a['R'] ? '-R' : '';
  const key = `${a.k}${extra}:${got ?? 'ok'}`;
  m.set(key, (m.get(key) ?? 0) + 1);
}

async function runSequence(ops: Op[], opts: { mode?: Mode; checkEvery?: boolean; budget?: number } = {}): Promise<void> {
  const mode = opts.mode ?? 'native';
  const { dir, cleanup } = await tempDir('strata-snapmodel-');
  const log: string[] = [];
  try {
    const home = join(dir, 'home');
    const mgr = new PoolManager(home, { txgTimeoutMs: 60_000, destroyTxgBudget: opts.budget });
    await mgr.poolCreate(POOL, { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 256 * MiB });
    const run: Run = { mgr, pool: await mgr.pool(POOL), home, dir, budget: opts.budget };
    const model = new Model(mode) as ModelLike & { resolve(o: Op): Action | null; apply(a: Action): string | null };
    // Always start with a volume so the sequence has something to act on.
    for (const op of [{ t: 'create', size: 2 * MiB, bs: 8192 } as Op, ...ops]) {
      const a = model.resolve(op);
      if (!a) continue;
      log.push(JSON.stringify(a));
      const expected = model.apply(a);
      if (a.k === 'reopen') await reopen(run, String(a['how']));
      // destroy -n's "would reclaim" is exactly what the destroy frees (no clones involved).
      let dry: { reclaim: number; before: number } | null = null;
      if (mode === 'native' && a.k === 'dsnap' && expected === null && !a['R']) {
        await run.pool.txg.syncNow();
        const r = await run.mgr.destroySnapshots(String(a['snap']), { dryRun: true });
        dry = { reclaim: r.reclaim, before: run.pool.logged.reduce((n, x) => n + x.allocatedBytes(), 0) };
      }
      const got = await execute({ mgr: run.mgr }, a);
      tally(mode, a, got);
      if (dry && got === null) {
        const freed = dry.before - run.pool.logged.reduce((n, x) => n + x.allocatedBytes(), 0);
        if (freed !== dry.reclaim) throw new Error(`step ${log.length}: ${JSON.stringify(a)}: destroy -n said ${dry.reclaim} bytes, it freed ${freed}\n${log.join('\n')}`);
      }
      if (got !== expected) throw new Error(`[snapmode=${mode}] step ${log.length}: ${JSON.stringify(a)}: engine ${got ?? 'succeeded'}, model ${expected ?? 'succeeds'}\n${log.join('\n')}`);
      const problems = await compareState(run.pool, model);
      // Space after every administrative step (those sync anyway; writes stay batched in open txgs between them).
      if (!['write', 'zero', 'trim'].includes(a.k) || opts.checkEvery) problems.push(...(await checkSpace(run.pool)));
      if (a.k === 'check') problems.push(...(await checkDiff(run.mgr, run.pool, model)));
      if (problems.length) throw new Error(`[snapmode=${mode}] after step ${log.length} ${JSON.stringify(a)}:\n  ${problems.join('\n  ')}\nsequence:\n${log.join('\n')}`);
    }
    {
      const p = await checkSpace(run.pool);
      if (p.length) throw new Error(`[snapmode=${mode}] before destroy-all:\n  ${p.join('\n  ')}\nsequence:\n${log.join('\n')}`);
    }
    await destroyAll(run, model, log);
    await run.pool.txg.syncNow();
    const logged = run.pool.logged.map((a) => a.allocatedBytes());
    if (logged.some((x) => x !== 0)) throw new Error(`[snapmode=${mode}] data space after destroying everything: ${logged} (expected 0)\nsequence:\n${log.join('\n')}`);
    // And still zero after an import (the space map on disk agrees).
    await reopen(run, 'close');
    const again = run.pool.logged.map((a) => a.allocatedBytes());
    if (again.some((x) => x !== 0)) throw new Error(`[snapmode=${mode}] data space after re-import: ${again}\nsequence:\n${log.join('\n')}`);
    await run.mgr.close();
  } finally {
    await cleanup();
  }
}

const RUNS = Number(process.env['SNAP_MODEL_RUNS'] ?? 60);
const LAYERED_RUNS = Number(process.env['SNAP_MODEL_LAYERED_RUNS'] ?? 60);
// fast-check's default size ('small') makes most sequences about ten ops long; cow and row runs
// are fewer but longer (states with several snapshots, clones and merges are what they need).
const NATIVE_SIZE = process.env['SNAP_MODEL_SIZE'] ? { size: process.env['SNAP_MODEL_SIZE'] as fc.Size } : {};
const LAYERED_SIZE = (process.env['SNAP_MODEL_LAYERED_SIZE'] ?? 'max') as fc.Size;
const ONLY = process.env['SNAP_MODEL_MODES']?.split(',');
const modes = (MODES as Mode[]).filter((m) => !ONLY || ONLY.includes(m));

const w = (seed: number, off: number, len: number, v = 0): Op => ({ t: 'write', v, off, len, seed, z: false, trim: false });

describe.each(modes)('snapmode=%s snapshots against a model', (mode) => {
  it('random sequences read, refuse and free exactly as the model says', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArbFor(mode), { minLength: 5, maxLength: 60, ...(mode === 'native' ? NATIVE_SIZE : { size: LAYERED_SIZE }) }), fc.boolean(), async (ops, small) => {
        // Half the runs split multi-snapshot destroys into a txg per snapshot (native; cow and row merge per snapshot anyway).
        await runSequence(ops, { mode, budget: small ? 1 : undefined });
      }),
      {
        numRuns: mode === 'native' ? RUNS : LAYERED_RUNS,
        endOnFailure: !!process.env['SNAP_MODEL_NOSHRINK'],
        ...(process.env['SNAP_MODEL_SEED'] ? { seed: Number(process.env['SNAP_MODEL_SEED']) } : {}),
      },
    );
    const m = stats.get(mode) ?? new Map<string, number>();
    console.log(`snapmode=${mode}: ${[...m].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }, 600_000);

  it('a hand-written sequence: destroying a middle snapshot keeps the blocks the previous one holds', async () => {
    await runSequence([w(1, 0, 200_000), { t: 'snap', v: 0, n: 0 }, { t: 'snap', v: 0, n: 1 }, w(2, 0, 200_000), { t: 'dsnap', s: 1, R: false }, w(3, 0, 300_000), { t: 'reopen', how: 'close' }], { mode });
  });

  it('a hand-written sequence: a range of neighbours destroyed in one pass and in one txg each', async () => {
    const ops: Op[] = [];
    for (let i = 0; i < 6; i++) ops.push(w(10 + i, (i % 3) * 0.1, 150_000), { t: 'snap', v: 0, n: i });
    ops.push(w(99, 0, 400_000), { t: 'dsnap', s: 1, R: false, span: 3 } as Op, { t: 'check' }, { t: 'rollback', s: 0, r: true }, { t: 'check' });
    for (const budget of [undefined, 1]) await runSequence(ops, { mode, checkEvery: true, budget });
  });

  it('a hand-written sequence: clone, promote, destroy the old parent, rollback', async () => {
    // cow: the clone is refused, so promote finds no clone (EINVAL); row: promote is refused (ENOTSUP).
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
    await runSequence(ops, { mode, checkEvery: true });
  });

  it('a hand-written sequence: snapshots under a clone merge, the clone resets, zeroes over lower layers', async () => {
    const ops: Op[] = [
      w(1, 0, 400_000),
      { t: 'snap', v: 0, n: 0 },
      w(2, 0.1, 200_000),
      { t: 'write', v: 0, off: 0.3, len: 100_000, seed: 0, z: true, trim: false },
      { t: 'snap', v: 0, n: 1 },
      w(3, 0.05, 100_000),
      { t: 'snap', v: 0, n: 2 },
      { t: 'clone', s: 2 }, // tank/c1 from v0@c
      w(4, 0.0, 300_000, 1), // into the clone (sorted: c1, v0)
      { t: 'write', v: 1, off: 0.5, len: 300_000, seed: 0, z: true, trim: true },
      { t: 'dsnap', s: 0, R: false }, // v0@a merges into v0@b, below the clone's origin
      { t: 'check' },
      { t: 'dsnap', s: 2, R: false }, // v0@c has a clone: EBUSY
      { t: 'rollback', s: 0, r: true }, // later v0@c has a clone: EBUSY
      { t: 'reopen', how: 'export' },
      { t: 'reset', v: 0 },
      { t: 'check' },
      { t: 'snap', v: 0, n: 3 }, // c1@d
      { t: 'reset', v: 0 }, // the clone has a snapshot: EBUSY
      { t: 'resize', v: 1, f: 2 }, // v0 has snapshots: ENOTSUP except native
      { t: 'dsnap', s: 2, R: true }, // v0@c with its clone
      { t: 'check' },
    ];
    await runSequence(ops, { mode, checkEvery: true });
  });
});
