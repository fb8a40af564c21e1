/**
 * An interrupted NBD benchmark stops what it started: its servers, fio, and the
 * bench file with the pool beside it (1 GiB and 2.5 GiB in /dev/shm at the default
 * size). Before, Ctrl-C, SIGTERM or `| head` killed the runner alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const RUN = path.resolve(__dirname, '../../dist/bench/nbd/run.js');

/** Processes whose command line mentions `dir` (the bench's servers name their file there). */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The runner itself (no re-run under strata's settings: it gets them here), on a small file in `dir`. */
function startBench(dir: string): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(
    process.execPath,
    [RUN, '--dir', dir, '--size', '16M', '--rounds', '1', '--runtime', '60', '--only', 'strata-raw,strata-pool', '--jobs', 'rand-read-4k-qd32'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.check=0', STRATA_BENCH_NO_NODE_FLAGS: '1' } },
  );
  child.stdout!.resume();
  child.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  return { child, exited };
}

/** Both servers up and fio running against the first: the pool exists and fio is a child. */
async function running(dir: string, child: ChildProcess): Promise<void> {
  await until('the pool target', () => readdirSync(dir).some((f) => f.endsWith('.pool.dev')), 60_000);
  await until('fio', () => {
    try {
      return readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .some((c) => c && readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'fio');
    } catch {
      return false;
    }
  }, 60_000);
}

describe('bench/nbd interrupted', () => {
  let dir = '';
  afterEach(() => {
    for (const pid of processesUsing(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('on SIGINT stops its servers and fio, removes its files and exits 130', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-bench-int-'));
    const { child, exited } = startBench(dir);
    await running(dir, child);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    await until('the servers to exit', () => processesUsing(dir).length === 0, 15_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('killed outright, its servers still stop (they watch the runner)', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-bench-kill-'));
    const { child, exited } = startBench(dir);
    await running(dir, child);
    child.kill('SIGKILL');
    await exited;
    await until('the servers to exit', () => processesUsing(dir).length === 0, 15_000);
    // A server closing its pool removes it; only the runner could have removed the bench file.
    expect(readdirSync(dir).filter((f) => f.includes('.pool'))).toEqual([]);
    expect(existsSync(dir)).toBe(true);
  }, 120_000);
});
