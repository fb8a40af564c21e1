/**
 * Benchmarks run strata's servers inside their own Node process, so they
 * must start that process the way bin/strata starts strata: with glibc's
 * malloc tunables (src/cli/node-env.ts). `asStrataRuns()` re-runs the
 * benchmark under them when it was started without (a plain
 * `node dist/bench/...`); the child's exit code becomes ours. To measure
 * without them, set GLIBC_TUNABLES to anything else (`glibc.malloc.check=0`).
 */
import { spawnSync } from 'node:child_process';
import { MALLOC_TUNABLES } from '../src/cli/node-env.js';

/** Returns when this process already runs as bin/strata would run it (or GLIBC_TUNABLES is the caller's own); else runs the benchmark again in one that does, and exits. */
export function asStrataRuns(): void {
  if (process.env['GLIBC_TUNABLES']) return;
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
  });
  process.exit(r.status ?? 1);
}
