/**
 * An interrupted snapshot-strategies benchmark stops what it started (fio, its `strata
 * serve` daemons, qemu-nbd) and removes its directory (a pool device, homes, qcow2 images).
 * Before, SIGINT and SIGTERM were handled (both exiting 130) but SIGHUP and a closed
 * stderr (`2>&1 | head`) killed the runner alone, leaving its daemons and files; killed
 * outright, its daemons ran on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const RUN = path.resolve(__dirname, '../../dist/bench/snapshot-strategies/run.js');

/** Processes whose command line mentions `dir` (strata serve and qemu-nbd name their home or image there). */
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

/** The runner's fio processes (fio's command line names a port, not the directory). */
function fios(child: ChildProcess): number[] {
  try {
    return readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((c) => c && readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'fio')
      .map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number) => {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return false;
  }
};

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** 16 MiB disks, one round; `only` picks the targets. Results go under `dir` too. */
function startBench(dir: string, only: string, runtime: number): { child: ChildProcess; exited: Promise<number | null> } {
  const args = ['--dir', dir, '--out', path.join(dir, 'results'), '--size', '16M', '--sizes', '16M', '--depths', '1,2', '--rounds', '1', '--runtime', String(runtime), '--only', only];
  const child = spawn(process.execPath, [RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  return { child, exited };
}

/** fio reading the first target: its servers are up. Returns the servers and fio. */
async function measuring(dir: string, child: ChildProcess, servers: number): Promise<number[]> {
  const others = () => processesUsing(dir).filter((p) => p !== child.pid);
  await until(`${servers} servers and fio`, () => others().length === servers && fios(child).length > 0, 90_000);
  return [...others(), ...fios(child)];
}

describe('bench/snapshot-strategies interrupted', () => {
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

  it.each([
    ['SIGHUP', 129],
    ['SIGTERM', 143],
  ] as const)('on %s stops fio, its daemons and qemu-nbd, removes its directory and exits %i', async (sig, status) => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-snapstrat-int-'));
    // The pool's daemon, and qemu-nbd serving the image fio reads.
    const { child, exited } = startBench(dir, 'qcow2-int/qemu-nbd', 60);
    child.stderr!.resume();
    const started = await measuring(dir, child, 2);
    child.kill(sig);
    expect(await exited).toBe(status);
    await until('everything it started to exit', () => !started.some(alive), 15_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('with its log piped into a reader that goes away (2>&1 | head), does the same and exits 141', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-snapstrat-pipe-'));
    const { child, exited } = startBench(dir, 'native', 60);
    // The reader leaves after the first line ("temporary pool ..."): the daemon has started.
    await new Promise<void>((resolve) => child.stderr!.once('data', () => resolve()));
    child.stderr!.destroy();
    expect(await exited).toBe(141);
    await until('the daemon to exit', () => processesUsing(dir).length === 0, 15_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('killed outright, its strata daemons still stop, and cleanly (they watch the runner)', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-snapstrat-kill-'));
    // The pool's daemon, and a strata serve serving the image fio reads.
    const { child, exited } = startBench(dir, 'qcow2-int/strata', 60);
    child.stderr!.resume();
    await measuring(dir, child, 2);
    child.kill('SIGKILL');
    await exited;
    await until('the daemons to exit', () => processesUsing(dir).length === 0, 15_000);
    // A daemon that shut down removed its pid file (one that died on its way, EPIPE on the
    // runner's end of its stderr, did not).
    const [work] = readdirSync(dir).filter((d) => d.startsWith('strata-bench-snapstrat-'));
    const homes = readdirSync(path.join(dir, work!)).filter((d) => d === 'home' || d.startsWith('imghome-'));
    expect(homes).toHaveLength(2);
    for (const h of homes) expect(existsSync(path.join(dir, work!, h, 'daemon.pid'))).toBe(false);
  }, 120_000);
});
