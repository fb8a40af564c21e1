/**
 * Crash child: runs a seeded random sequence of snapshot operations on pool
 * `tank` of a home (through PoolManager from dist/), journaling each action
 * durably before (`B json`) and after (`D code`) it runs, until SIGKILLed.
 * Writes are flushed, so every completed action is durable.
 *
 * MODE (default native) is the snapmode of every volume (model-lib.mjs);
 * cow and row runs also reset clones to their origin.
 *
 * usage: node crash-child.mjs DIST HOME JOURNAL SEED [MODE]
 */
import { crashRunner, randomOp, rng } from './model-lib.mjs';

const [dist, home, journal, seedArg, mode = 'native'] = process.argv.slice(2);
const { mgr, model, act, closeJournal } = await crashRunner({ dist, home, journal, mode });
const KINDS = ['create', 'write', 'write', 'write', 'write', 'snap', 'snap', 'clone', 'promote', 'rollback', 'dsnap', 'dvol', 'rsnap', 'rvol', 'hold', 'release'];
// Native keeps randomOp's own mix (the seeds of earlier runs still mean the same); cow and row add resets.
const opts = mode === 'native' ? { noRecursiveClones: true } : { noRecursiveClones: true, kinds: [...KINDS, 'write', 'snap', 'reset'] };
const r = rng(Number(seedArg));
for (let i = 0; i < 100_000; i++) {
  const op = i === 0 ? { t: 'create', size: 2 << 20, bs: 8192 } : randomOp(r, opts);
  const a = model.resolve(op);
  if (a) await act(a);
}
closeJournal();
await mgr.close();
