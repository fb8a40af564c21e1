/**
 * SIGKILL during the snapshot strategies' long operations (child:
 * crash-child.mjs): (a) a cow copy-out workload, (b) row (and cow) merges
 * of large layers while the guest keeps writing, (c) template clone batches
 * of 100 (native and row). Kills land at random delays after the child
 * announces the stretch of interest; seeds are printed, and one round
 * reproduces with SNAP_STRAT_CRASH_SEED=<seed> SNAP_STRAT_CRASH_ONLY=<scenario>.
 *
 * After each kill the pool is imported and must equal the model (the
 * journal's completed actions) plus, for each action in flight, either
 * nothing of it or all of it, or one of the partial states listed in
 * test/pool/snapshots/crash-states.ts (a write's subset of blocks, a prefix
 * of destroy -R's clones, the later snapshots a cow rollback -r merged away
 * first; never a half-merged layer). So
 * acknowledged (flushed) writes and completed snapshot/clone/destroy
 * commands are intact, every snapshot reads exactly its data (and
 * blockStatus never calls data a hole), and a clone batch is all there or
 * not at all. Then space: trees and the space map agree (check.ts), and
 * destroying everything leaves no data allocated.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { buildProject } from '../formats/qcow2/helpers.js';
import { rng, tempDir } from '../pool/engine/helpers.js';
import { checkSpace } from '../pool/snapshots/check.js';
import { candidateStates, labelOf } from '../pool/snapshots/crash-states.js';
import { createCrashPool, destroyEverything, importCrashPool, matchState, parseJournal, replayJournal, runAndKill } from '../pool/snapshots/crash-helpers.js';

type Scenario = 'copyout' | 'merge' | 'clones';

const CHILD = join(import.meta.dirname, 'crash-child.mjs');

async function round(dist: string, scenario: Scenario, mode: string, seed: number): Promise<string> {
  const { dir, cleanup } = await tempDir('strata-stratcrash-');
  const r = rng(seed);
  try {
    const { home, journal } = await createCrashPool(dir);

    // Where to aim: after the K-th announced stretch (or the N-th action), a random delay.
    const aim =
      scenario === 'copyout'
        ? { line: /^done (\d+)$/, at: 10 + r.below(90), delay: r.below(150) }
        : scenario === 'merge'
          ? { line: /^phase merge (\d+)$/, at: r.below(3), delay: r.below(mode === 'row' ? 400 : 100) } // a merge takes 200-500 ms here (row), 15-150 ms (cow)
          : { line: /^phase clone (\d+)$/, at: r.below(3), delay: r.below(4) === 0 ? r.below(1500) : r.below(80) }; // a batch 25-250 ms
    await runAndKill([CHILD, dist, home, journal, scenario, mode, String(r.next())], aim, `seed ${seed}`);

    const { done, inflight } = parseJournal(journal, true);
    const model = replayJournal(mode, done, `seed ${seed}`);

    const { mgr, pool } = await importCrashPool(home);
    const { state, problems } = await matchState(pool, await candidateStates(model, inflight, pool), { closest: true });
    const history = () => done.slice(-40).map((d) => JSON.stringify(d.a)).join('\n');
    const what = `seed ${seed} (${scenario}, snapmode=${mode})`;
    if (!state) throw new Error(`${what}: after SIGKILL the pool matches no accepted state with ${JSON.stringify(inflight)} in flight:\n  ${problems.join('\n  ')}\nlast completed:\n${history()}`);
    const space = await checkSpace(pool);
    if (space.length) throw new Error(`${what}: space after SIGKILL:\n  ${space.join('\n  ')}\nlast completed:\n${history()}`);

    // Destroy everything (the engine's state is the model's now): no data space left.
    await destroyEverything(mgr, pool, state, what);
    await mgr.close();
    const l = labelOf(state);
    return `${seed}:${done.length}+${inflight.map((a) => a.k).join('/') || '-'}${l === 'before' ? '' : `(${l})`}`;
  } finally {
    await cleanup();
  }
}

const ONLY = process.env['SNAP_STRAT_CRASH_ONLY'];
const SEED = process.env['SNAP_STRAT_CRASH_SEED'];
const ROUNDS = Number(process.env['SNAP_STRAT_CRASH_ROUNDS'] ?? 5);

let build: ReturnType<typeof buildProject> | null = null;
const dist = () => (build ??= buildProject('stratcrash')).root;

const cases: [Scenario, string, number][] = [
  ['copyout', 'cow', 20261201],
  ['merge', 'row', 20261202],
  // cow too: the newest store is merged with I/O flowing (copy-outs still land in it), the rest gated.
  ['merge', 'cow', 20261205],
  ['clones', 'native', 20261203],
  ['clones', 'row', 20261204],
];

describe('snapshot strategies survive SIGKILL at random points', () => {
  beforeAll(() => void dist(), 300_000);
  afterAll(() => build?.cleanup());

  it.each(cases.filter(([s, m]) => !ONLY || ONLY === s || ONLY === `${s}:${m}`))('%s (snapmode=%s)', async (scenario, mode, base) => {
    const r = rng(base);
    const seeds = SEED ? [Number(SEED)] : Array.from({ length: ROUNDS }, () => r.next());
    const seen: string[] = [];
    for (const seed of seeds) seen.push(await round(dist(), scenario, mode, seed));
    // Visible in the log: per round, the seed, how far it got, what was in flight and which state matched.
    console.log(`${scenario} snapmode=${mode} rounds (seed:completed+in flight): ${seen.join(' ')}`);
  }, 600_000);
});
