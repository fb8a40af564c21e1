/**
 * An interrupted qcow2 benchmark stops what it started and removes its directory (the
 * 1 GiB source image, the chains: in /dev/shm at the defaults). Before, SIGINT, SIGTERM
 * or `| head` killed the runner alone: its qemu-nbd servers (one per chain depth) and
 * the directory stayed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const RUN = path.resolve(__dirname, '../../dist/bench/qcow2/run.js');

/** Processes whose command line mentions `dir` (qemu-nbd names its image there). */
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

function startBench(dir: string, args: string[]): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [RUN, '--dir', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
  return { child, exited };
}

/** The NBD phase on 16 MiB chains of depth 1 and 2: two qemu-nbd servers, fio running. */
const NBD = ['--only', 'nbd', '--chain-size-mib', '16', '--depths', '1,2', '--rounds', '1'];

describe('bench/qcow2 interrupted', () => {
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

  it('on SIGINT stops fio and its qemu-nbd servers, removes its directory and exits 130', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-qcow2-int-'));
    const { child, exited } = startBench(dir, [...NBD, '--runtime', '60']);
    child.stdout!.resume();
    const servers = () => processesUsing(dir).filter((p) => p !== child.pid);
    await until('two qemu-nbd servers and fio', () => servers().length === 2 && fios(child).length > 0, 60_000);
    const fio = fios(child);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    await until('the servers and fio to exit', () => processesUsing(dir).length === 0 && !fio.some(alive), 15_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('with its output piped into a reader that goes away (| head), does the same and exits 141', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-qcow2-pipe-'));
    // Runs of 1 s: a line per fio run. The reader leaves after the first.
    const { child, exited } = startBench(dir, [...NBD, '--rounds', '5', '--runtime', '1']);
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    child.stdout!.destroy();
    expect(await exited).toBe(141);
    await until('the servers to exit', () => processesUsing(dir).length === 0, 15_000);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('on SIGTERM during the (synchronous) converts removes the images and exits 143', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strata-qcow2-conv-'));
    const { child, exited } = startBench(dir, ['--only', 'convert', '--size-mib', '16', '--runs', '1000']);
    child.stdout!.resume();
    const work = () => readdirSync(dir).map((d) => readdirSync(path.join(dir, d))).flat();
    await until('the source images', () => work().includes('src.qcow2'), 60_000);
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);
});
