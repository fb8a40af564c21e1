/**
 * Benchmarks run strata's servers inside their own Node process, so they
 * must start that process the way bin/strata starts strata: with glibc's
 * malloc tunables and V8's flags (src/cli/node-env.ts). `asStrataRuns()`
 * re-runs the benchmark under them when it was started without (a plain
 * `node dist/bench/...`); the child's exit code becomes ours, and the
 * servers it spawns inherit its flags (process.execArgv). To measure
 * without the tunables, set GLIBC_TUNABLES to anything else
 * (`glibc.malloc.check=0`); without the flags, set
 * STRATA_BENCH_NO_NODE_FLAGS=1.
 */
import { spawnSync } from 'node:child_process';
import { MALLOC_TUNABLES, NODE_FLAGS } from '../src/cli/node-env.js';

/** Returns when this process already runs as bin/strata would run it (or the caller chose otherwise); else runs the benchmark again in one that does, and exits. */
export function asStrataRuns(): void {
  const flags = process.env['STRATA_BENCH_NO_NODE_FLAGS'] === '1' ? [] : NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
  if (process.env['GLIBC_TUNABLES'] && flags.length === 0) return;
  const r = spawnSync(process.execPath, [...flags, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLIBC_TUNABLES: process.env['GLIBC_TUNABLES'] || MALLOC_TUNABLES },
  });
  process.exit(r.status ?? 1);
}
