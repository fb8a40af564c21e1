/**
 * What the two SIGKILL tests of snapshots share: this folder's crash.test.ts
 * (random sequences per snapmode) and test/snapshot/crash.test.ts (the
 * strategies' long operations). A fresh pool, a crash child run until a
 * chosen moment and killed, its journal, the model replayed from it, the
 * accepted state the imported pool equals, and the final check that
 * destroying everything leaves no data allocated.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import type { Pool } from '../../../src/pool/pool.js';
import { MiB } from '../engine/helpers.js';
import { compareState } from './check.js';
import type { Action, CrashModel as M } from './crash-states.js';
// @ts-expect-error plain JS module shared with the crash children
import { Model, execute } from './model-lib.mjs';

/** A pool 'tank' (one 256 MiB file) in a fresh home under `dir`; where the child's journal goes. */
export async function createCrashPool(dir: string): Promise<{ home: string; journal: string }> {
  const home = join(dir, 'home');
  const journal = join(dir, 'journal');
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
  await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 256 * MiB });
  await mgr.close();
  return { home, journal };
}

/**
 * Run a crash child (node `args`) until it prints a line matching `aim.line`
 * whose number is at least `aim.at`, wait `aim.delay` ms (randomness, not
 * synchronization) and SIGKILL it. `tag` prefixes the failure messages.
 */
export async function runAndKill(args: string[], aim: { line: RegExp; at: number; delay: number }, tag?: string): Promise<void> {
  const pre = tag ? `${tag}: ` : '';
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const m = aim.line.exec(l);
      if (m && Number(m[1]) >= aim.at) resolve();
    });
    void exited.then(({ code, signal }) => reject(new Error(`${pre}child exited early (code ${code}, signal ${signal}): ${stderr}`)));
  });
  await new Promise((res) => setTimeout(res, aim.delay));
  child.kill('SIGKILL');
  const ex = await exited;
  expect(ex.signal, `${pre}child should have been killed: ${stderr}`).toBe('SIGKILL');
}

export interface Journal {
  done: { a: Action; code: string | null }[];
  /** Begun but not returned, in the order they began. */
  inflight: Action[];
}

/**
 * A child's journal: `B json` when an action begins, `D code` when it
 * returns; with `ids` (actions that overlap, test/snapshot's child) `B id
 * json` and `D id code`. Completed actions in the order they returned, and
 * those begun but not returned.
 */
export function parseJournal(path: string, ids = false): Journal {
  const begun = new Map<number, Action>();
  const done: Journal['done'] = [];
  if (!existsSync(path)) return { done, inflight: [] };
  const form = ids ? /^([BD]) (\d+) (.*)$/ : /^([BD]) ()(.*)$/;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = form.exec(line);
    if (!m) continue; // a torn last line
    const id = Number(m[2]);
    if (m[1] === 'B') begun.set(id, JSON.parse(m[3]!) as Action);
    else {
      done.push({ a: begun.get(id)!, code: JSON.parse(m[3]!) as string | null });
      begun.delete(id);
    }
  }
  return { done, inflight: [...begun.values()] };
}

/** The model of a `mode` pool after the journal's completed actions, each checked against its journaled result. */
export function replayJournal(mode: string, done: Journal['done'], what: string): M {
  const model = new Model(mode) as M;
  for (const { a, code } of done) expect(model.apply(a), `${what}: journaled result of ${JSON.stringify(a)}`).toBe(code);
  return model;
}

/** Import the killed child's pool. */
export async function importCrashPool(home: string): Promise<{ mgr: PoolManager; pool: Pool }> {
  const mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
  return { mgr, pool: await mgr.pool('tank') };
}

/**
 * The first candidate state the pool equals (`problems` empty), else no
 * state and the problems found against the first candidate or, with
 * `closest`, against the one with the fewest.
 */
export async function matchState(pool: Pool, candidates: M[], opts: { closest?: boolean } = {}): Promise<{ state?: M; problems: string[] }> {
  let best: string[] | null = null;
  for (const c of candidates) {
    const p = await compareState(pool, c);
    if (p.length === 0) return { state: c, problems: [] };
    if (!best || (opts.closest && p.length < best.length)) best = p;
  }
  return { problems: best! };
}

/**
 * Release every hold and destroy every volume of `state` (the pool's state
 * now; volumes with clones wait for a later pass): no data space may be left.
 * `what` prefixes the failure messages.
 */
export async function destroyEverything(mgr: PoolManager, pool: Pool, state: M, what?: string): Promise<void> {
  for (const [n, v] of state.vols) for (const s of v.snaps) for (const tag of [...s.holds]) expect(await execute({ mgr }, { k: 'release', snap: `${n}@${s.name}`, tag })).toBe(null);
  const left = new Set(state.vols.keys());
  while (left.size) {
    const before = left.size;
    for (const n of [...left]) {
      const code = await execute({ mgr }, { k: 'dvol', name: n, r: true });
      if (code === null) left.delete(n);
      else expect(code, what && `${what}: destroy ${n}`).toBe('EBUSY'); // has clones yet: next pass
    }
    expect(left.size, `${what ? `${what}: ` : ''}cannot destroy ${[...left]}`).toBeLessThan(before);
  }
  await pool.txg.syncNow();
  expect(pool.logged.map((a) => a.allocatedBytes()), what && `${what}: data space after destroying everything`).toEqual(pool.logged.map(() => 0));
}
