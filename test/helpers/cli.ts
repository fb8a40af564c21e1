/** Helpers for tests that drive the built `strata` binary and the daemon as real processes. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = join(ROOT, 'dist/src/cli/main.js');

/** Newest modification time of the files under `dir` whose names end in `ext`. */
export function newestMtime(dir: string, ext = '.ts'): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newestMtime(p, ext));
    else if (e.name.endsWith(ext)) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

/** Build dist/ once if it is missing or older than the sources (npm test builds first anyway). */
export function ensureBuilt(): void {
  const src = Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'formats')));
  if (existsSync(BIN) && statSync(BIN).mtimeMs >= src) return;
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
  if (!existsSync(BIN)) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
  // The build's second step (npm run build): the CLI bundle bin/strata runs.
  spawnSync(process.execPath, ['scripts/bundle-cli.mjs'], { cwd: ROOT, encoding: 'utf8' });
}

/** The CLI bundle bin/strata runs for `strata image ...` (src/cli/main-fast.ts). */
export const BUNDLE = join(ROOT, 'dist/src/cli/main-fast.cjs');

/** ensureBuilt, then the bundle (the build's second step) if it is missing or older than dist/. */
export function ensureBundled(): void {
  ensureBuilt();
  const js = Math.max(newestMtime(join(ROOT, 'dist/src'), '.js'), newestMtime(join(ROOT, 'dist/formats'), '.js'));
  if (existsSync(BUNDLE) && statSync(BUNDLE).mtimeMs >= js) return;
  const r = spawnSync(process.execPath, ['scripts/bundle-cli.mjs'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bundling failed: ${r.stdout}${r.stderr}`);
}

export function tmp(prefix = 'strata-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function strata(home: string, args: string[], opts: { input?: string; env?: Record<string, string> } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, '--home', home, ...args], { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, input: opts.input, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
    s.once('error', rej);
  });
}

export interface Daemon {
  proc: ChildProcess;
  nbdPort: number;
  httpPort: number;
  log: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Start `strata serve` and wait until it says it is serving. */
export async function startDaemon(home: string, extra: string[] = []): Promise<Daemon> {
  const nbdPort = await freePort();
  const httpPort = await freePort();
  const proc = spawn(process.execPath, [BIN, '--home', home, 'serve', '--nbd', `127.0.0.1:${nbdPort}`, '--http', `127.0.0.1:${httpPort}`, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon did not start:\n${out}`)), 60_000);
    const check = () => {
      if (out.includes('strata: serving')) {
        clearTimeout(timer);
        res();
      }
    };
    proc.stderr!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`daemon exited with ${code}:\n${out}`));
    });
  });
  return {
    proc,
    nbdPort,
    httpPort,
    log: () => out,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((res) => {
        if (proc.exitCode !== null) return res(proc.exitCode);
        proc.once('exit', (code) => res(code));
        proc.kill(signal);
      }),
  };
}
