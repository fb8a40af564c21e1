/**
 * Crash consistency with real processes: a child process writes to a pool
 * volume (random offsets and sizes, partial blocks, writeZeroes, trims,
 * periodic flushes) and is SIGKILLed at a random moment, many times. After
 * every kill the pool must import, every block must read and verify, the
 * volume must equal the model of acknowledged-and-flushed data plus some
 * prefix of the ops issued after that flush (ops are issued one at a time
 * and txgs commit in order, so nothing else is possible), and the space
 * map must agree with the tree (no live block is free).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { ensureBuilt, ROOT } from './build.js';
import { checkTreeAllocated, MiB, readAll, rng, tempDir } from './helpers.js';
// @ts-expect-error plain JS module shared with the child process
import { applyOp, readPending, writeDurable } from './crash-lib.mjs';

const WRITER = join(import.meta.dirname, 'crash-writer.mjs');

interface Op {
  g: number;
  k: 'w' | 'z' | 't';
  o: number;
  n: number;
  s: number;
}

/** `got` equals `cand` except inside op's range, where each byte is cand's or zero. */
function partlyZeroed(cand: Buffer, got: Buffer, op: Op): boolean {
  const end = op.o + op.n;
  if (!cand.subarray(0, op.o).equals(got.subarray(0, op.o)) || !cand.subarray(end).equals(got.subarray(end))) return false;
  for (let i = op.o; i < end; i++) if (got[i] !== 0 && got[i] !== cand[i]) return false;
  return true;
}

/** Start the writer; resolve after it reports `flushes` completed flushes (or reject if it dies). */
function runWriter(home: string, state: string, vol: string, seed: number, flushes: number, lanes = 1, workers?: number) {
  const child = spawn(process.execPath, [WRITER, join(ROOT, 'dist'), home, state, vol, String(seed)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STRATA_CRASH_LANES: String(lanes), ...(workers === undefined ? {} : { STRATA_PREPARE_WORKERS: String(workers) }) },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (l) => {
      const m = /^flushed (\d+)$/.exec(l);
      if (m && Number(m[1]) >= flushes) resolve();
    });
    void exited.then(({ code, signal }) => reject(new Error(`writer exited early (code ${code}, signal ${signal}): ${stderr}`)));
  });
  return { child, ready, exited, stderr: () => stderr };
}

async function crashRounds(opts: { rounds: number; volsize: string; blocksize: string; props?: Record<string, string>; seed: number; lanes?: number; workers?: number }) {
  const lanes = opts.lanes ?? 1;
  const sfx = (l: number) => (lanes > 1 ? `-${l}` : '');
  const { dir, cleanup } = await tempDir('strata-crash-');
  try {
    const home = join(dir, 'home');
    const state = join(dir, 'state');
    let mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
    await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 128 * MiB });
    await mgr.create('tank/vm', { volsize: opts.volsize, blocksize: opts.blocksize, sparse: true, props: opts.props });
    const size = (await mgr.openVolume('tank/vm')).volume.info().size;
    await mgr.close();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(state);
    const bsBytes = (await import('../../../src/pool/dataset/units.js')).parseSize(opts.blocksize);
    const region = Math.floor(size / lanes / bsBytes) * bsBytes;
    for (let l = 0; l < lanes; l++) {
      writeDurable(join(state, `model${sfx(l)}.bin`), Buffer.alloc(region));
      writeDurable(join(state, `gen${sfx(l)}`), '0');
    }

    // STRATA_CRASH_SEED varies the run (for soak testing); the default is fixed and reproducible.
    const r = rng(opts.seed ^ Number(process.env['STRATA_CRASH_SEED'] ?? 0));
    let sawPrefixes = 0;
    for (let round = 0; round < opts.rounds; round++) {
      const w = runWriter(home, state, 'tank/vm', r.next(), 1 + r.below(3), lanes, opts.workers);
      await w.ready;
      // A random moment after the writer is well under way (not synchronization: the point is randomness).
      await new Promise((res) => setTimeout(res, r.below(150)));
      w.child.kill('SIGKILL');
      const ex = await w.exited;
      expect(ex.signal, `writer should have been killed, stderr: ${w.stderr()}`).toBe('SIGKILL');

      if (process.env['STRATA_KEEP']) {
        const { copyFileSync } = await import('node:fs');
        copyFileSync(join(dir, 'd1.img'), join(dir, 'pre-import.img'));
      }
      // The pool imports (the pool cache still names it; the dead owner's lock is stale).
      mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
      const pool = await mgr.pool('tank');
      const { volume, release } = await mgr.openVolume('tank/vm');
      const actual = await readAll(volume); // every block reads and verifies (EIO would throw)
      await checkTreeAllocated(pool, 'tank/vm');

      for (let l = 0; l < lanes; l++) {
        const gen = Number(readFileSync(join(state, `gen${sfx(l)}`), 'utf8'));
        const model = readFileSync(join(state, `model${sfx(l)}.bin`));
        const pending = readPending(join(state, `pending${sfx(l)}.log`), gen) as Op[];
        const got = actual.subarray(l * region, (l + 1) * region);
        // The region must be model + pending[0..k) for some k, except that the op in
        // flight, pending[k], may be partly there if it is a zero or trim: a large zero
        // is recorded in steps (edges, then the whole blocks), and a txg commit or
        // another lane's log commit can land between them. Writes are atomic per op.
        let match = -1;
        const cand = Buffer.from(model);
        for (let k = 0; k <= pending.length && match < 0; k++) {
          if (k > 0) applyOp(cand, pending[k - 1]!);
          if (cand.equals(got)) match = k;
          else if (k < pending.length && pending[k]!.k !== 'w' && partlyZeroed(cand, got, pending[k]!)) match = k;
        }
        if (match < 0) {
          // Say where it differs from the flushed model, for the failure message.
          let at = -1;
          for (let i = 0; i < region; i++) if (model[i] !== got[i]) { at = i; break; }
          expect.fail(`round ${round}, lane ${l}: region is not the flushed model plus a prefix of ${pending.length} later ops (first difference from the model at byte ${at})`);
        }
        if (match > 0) sawPrefixes++;
        // Continue from what is on disk as a new generation.
        writeDurable(join(state, `model${sfx(l)}.bin`), Buffer.from(got));
        writeDurable(join(state, `gen${sfx(l)}`), String(gen + 1));
        rmSync(join(state, `pending${sfx(l)}.log`), { force: true });
      }
      release();
      await mgr.close();
      expect(existsSync(join(home, 'locks', 'tank.lock'))).toBe(false);
    }
    await cleanup();
    return { sawPrefixes };
  } catch (e) {
    if (process.env['STRATA_KEEP']) {
      process.stderr.write(`crash test state kept in ${dir}\n`);
      throw e;
    }
    await cleanup();
    throw e;
  }
}

describe('one process at a time', () => {
  beforeAll(async () => {
    await ensureBuilt();
  });

  it('a second opener gets "in use by process N" and changes nothing', async () => {
    const { dir, cleanup } = await tempDir('strata-lock-');
    try {
      const home = join(dir, 'home');
      const state = join(dir, 'state');
      let mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
      await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 64 * MiB });
      await mgr.create('tank/vm', { volsize: '4M', sparse: true });
      await mgr.close();
      const { mkdirSync } = await import('node:fs');
      mkdirSync(state);
      writeDurable(join(state, 'model.bin'), Buffer.alloc(4 * MiB));
      writeDurable(join(state, 'gen'), '0');
      const w = runWriter(home, state, 'tank/vm', 99, 1);
      await w.ready;
      mgr = new PoolManager(home);
      await expect(mgr.pool('tank')).rejects.toMatchObject({ code: 'EBUSY', message: expect.stringContaining(`in use by process ${w.child.pid}`) });
      // The CLI says the same in one line.
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), '--home', home, 'list'], { encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toBe(`strata: pool 'tank' is in use by process ${w.child.pid}\n`);
      w.child.kill('SIGKILL');
      await w.exited;
      // Once the owner is gone the pool opens again.
      const { volume } = await mgr.openVolume('tank/vm');
      expect(volume.info().size).toBe(4 * MiB);
      await mgr.close();
    } finally {
      await cleanup();
    }
  });
});

describe('crash consistency (SIGKILL during random writes)', () => {
  beforeAll(async () => {
    await ensureBuilt();
  });
  afterAll(() => {});

  it('16K blocks, lz4: 14 kills, data flushed before each kill is intact', async () => {
    await crashRounds({ rounds: 14, volsize: '24M', blocksize: '16K', seed: 0x5eed1 });
  });

  it('4 concurrent writers on their own regions, 16K blocks: 6 kills', async () => {
    await crashRounds({ rounds: 6, volsize: '32M', blocksize: '16K', seed: 0x1a4e5, lanes: 4 });
  });

  it('16K blocks, lz4, blocks prepared on a worker thread: 6 kills', async () => {
    await crashRounds({ rounds: 6, volsize: '24M', blocksize: '16K', seed: 0x3a7e5, workers: 1 });
  });

  it('4K blocks, copies=2, sha256, gzip: 8 kills', async () => {
    await crashRounds({ rounds: 8, volsize: '20M', blocksize: '4K', props: { copies: '2', checksum: 'sha256', compression: 'gzip-1' }, seed: 0xbeef2 });
  });
});
