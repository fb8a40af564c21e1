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
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { MALLOC_TUNABLES, NODE_FLAGS } from '../src/cli/node-env.js';

/**
 * Resolves when this process already runs as bin/strata would run it (or the caller chose
 * otherwise); else runs the benchmark again in one that does, and exits with its code
 * (the promise never resolves). Signals are passed on: a server started by hand as
 * `node dist/bench/nbd/run.js --serve ...` and then sent SIGTERM used to lose only this
 * parent (it waited in spawnSync) and leave the real server running, orphaned.
 */
export function asStrataRuns(): Promise<void> {
  const flags = process.env['STRATA_BENCH_NO_NODE_FLAGS'] === '1' ? [] : NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
  if (process.env['GLIBC_TUNABLES'] && flags.length === 0) return Promise.resolve();
  const child = spawn(process.execPath, [...flags, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLIBC_TUNABLES: process.env['GLIBC_TUNABLES'] || MALLOC_TUNABLES },
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => {
    console.error(`cannot re-run under strata's settings: ${e.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
  return new Promise<void>(() => {});
}
