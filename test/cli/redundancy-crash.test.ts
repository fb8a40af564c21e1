/**
 * Issue 3: SIGKILL during a scrub and during a resilver. The daemon runs the
 * scan in the background, rate-limited (STRATA_SCAN_RATE) so it is still
 * running when killed; the next open of the pool resumes it from the
 * bookmark persisted in the MOS root, and it finishes with no data lost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt, freePort, tmp } from '../helpers/cli.js';
import { createArgs, makeDevices, MiB, ok, poolState, readVolume, scanText, strata, writeVolume, type Layout } from './redundancy-helpers.js';

beforeAll(() => {
  if (!process.env['STRATA_TEST_BIN']) ensureBuilt();
});

const RATE = 2 * MiB;

async function startDaemon(home: string): Promise<ChildProcess> {
  const nbd = await freePort();
  const bin = process.env['STRATA_TEST_BIN'] ?? BIN;
  const proc = spawn(process.execPath, [bin, '--home', home, 'serve', '--nbd', `127.0.0.1:${nbd}`, '--http', 'off', '--iscsi', 'off'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STRATA_SCAN_RATE: String(RATE) },
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not start:\n${out}`)), 60_000);
    proc.stderr!.on('data', () => {
      if (out.includes('strata: serving')) {
        clearTimeout(timer);
        res();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`daemon exited with ${code}:\n${out}`));
    });
  });
  return proc;
}

function kill9(proc: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res();
    proc.once('exit', () => res());
    proc.kill('SIGKILL');
  });
}

/** Percent done from the scan line, or null when no scan is in progress. */
function percentDone(status: string): number | null {
  const m = /([\d.]+)% done/.exec(status);
  return m && /in progress/.test(status) ? Number(m[1]) : null;
}

/** Poll `pool status` (through the daemon) until the scan passed `pct` percent; false if it finished first. */
async function waitProgress(home: string, pct: number): Promise<boolean> {
  for (let i = 0; i < 600; i++) {
    const st = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
    const p = percentDone(st);
    if (p !== null && p >= pct) return true;
    if (p === null && /repaired|resilvered/.test(scanText(st))) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

const MIRROR: Layout = { name: 'mirror-2', groups: [{ kind: 'mirror', n: 2 }] };

describe('redundancy: crash during scans', () => {
  it('a scrub killed with SIGKILL resumes at the next import and finishes', async () => {
    const root = tmp('strata-crash-scrub-');
    const home = join(root, 'home');
    const devDir = join(root, 'devs');
    mkdirSync(devDir);
    let d: ChildProcess | null = null;
    try {
      const devs = makeDevices(devDir, MIRROR, 96 * MiB);
      ok(strata(home, ['pool', 'create', 'tank', ...createArgs(MIRROR, devs)]));
      const data = writeVolume(home, root, 'tank/vol', 24 * MiB);
      d = await startDaemon(home);
      ok(strata(home, ['pool', 'scrub', 'tank']));
      // Past 60% at 2 MiB/s is past the first txg (5 s) that persisted the bookmark.
      expect(await waitProgress(home, 60)).toBe(true);
      await kill9(d);
      d = null;
      // The next open resumes: still in progress, and not from the start.
      const st = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
      expect(scanText(st)).toMatch(/scrub in progress/);
      expect(percentDone(st)!).toBeGreaterThan(0);
      ok(strata(home, ['pool', 'wait', 'tank']));
      const done = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
      expect(scanText(done)).toMatch(/^scrub repaired 0B in .* with 0 errors/);
      expect(poolState(done)).toBe('ONLINE');
      expect(readVolume(home, root, 'tank/vol').equals(data)).toBe(true);
    } finally {
      if (d) await kill9(d);
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a resilver killed with SIGKILL resumes at the next import and finishes', async () => {
    const root = tmp('strata-crash-resilver-');
    const home = join(root, 'home');
    const devDir = join(root, 'devs');
    mkdirSync(devDir);
    let d: ChildProcess | null = null;
    try {
      const devs = makeDevices(devDir, MIRROR, 96 * MiB);
      ok(strata(home, ['pool', 'create', 'tank', ...createArgs(MIRROR, devs)]));
      const data = writeVolume(home, root, 'tank/vol', 24 * MiB);
      ok(strata(home, ['pool', 'export', 'tank']));
      const lost = devs[0]![1]!;
      unlinkSync(lost);
      ok(strata(home, ['pool', 'import', '-d', devDir, 'tank']));
      d = await startDaemon(home);
      const neu = join(devDir, 'new');
      writeFileSync(neu, '');
      truncateSync(neu, 96 * MiB);
      ok(strata(home, ['pool', 'replace', 'tank', lost, neu]));
      expect(await waitProgress(home, 60)).toBe(true);
      await kill9(d);
      d = null;
      const st = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
      expect(scanText(st)).toMatch(/resilver in progress/);
      expect(st).toMatch(/replacing-1/);
      ok(strata(home, ['pool', 'wait', 'tank']));
      const done = ok(strata(home, ['pool', 'status', 'tank'])).stdout;
      expect(scanText(done)).toMatch(/^resilvered \S+ in .* with 0 errors/);
      expect(poolState(done)).toBe('ONLINE');
      expect(done).toContain(neu);
      expect(done).not.toMatch(/replacing/);
      // The new device really holds the data: lose the old one and read.
      ok(strata(home, ['pool', 'export', 'tank']));
      unlinkSync(devs[0]![0]!);
      ok(strata(home, ['pool', 'import', '-d', devDir, 'tank']));
      expect(readVolume(home, root, 'tank/vol').equals(data)).toBe(true);
      ok(strata(home, ['pool', 'scrub', 'tank']));
      expect(scanText(ok(strata(home, ['pool', 'status', 'tank'])).stdout)).toMatch(/^scrub repaired 0B in .* with 0 errors/);
    } finally {
      if (d) await kill9(d);
      rmSync(root, { recursive: true, force: true });
    }
  });
});
