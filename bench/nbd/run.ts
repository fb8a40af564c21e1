/**
 * NBD benchmark: fio (ioengine=nbd) against strata serving a raw file, and,
 * on the same file in the same run, qemu-nbd (-f raw --cache=writeback) and
 * nbdkit's file plugin. Servers alternate job by job (the order rotates
 * every round); each number is the median of the rounds. Prints MB/s, IOPS
 * and strata's ratios, and writes JSON under bench/results/.
 *
 *   npm run build && node dist/bench/nbd/run.js [--rounds 5] [--runtime 8]
 *       [--size 1G] [--dir /dev/shm] [--only strata-raw,nbdkit] [--jobs rand-read-4k-qd32]
 *       [--variant NAME=BASE[:K=V,...]]...   (variantTarget: an A/B in the same run)
 *
 * Extra strata targets (a pool volume, a qcow2 image...) plug in with
 * strataTarget(name, { open, close }): anything that yields a BlockDevice,
 * served from a process of its own (this file run with --serve).
 * The default file lives on /dev/shm when it exists so the numbers measure
 * the servers, not the disk's writeback. Interrupted (Ctrl-C, SIGTERM, a closed
 * stdout), the run stops every process it started and removes that file and the
 * pool beside it (interruptible); killed outright, its strata servers still stop.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BlockDevice } from '../../src/device/block-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { PoolManager } from '../../src/daemon/services.js';
import { copyDevice } from '../../src/device/copy.js';
import { RawDevice } from '../../formats/raw/index.js';
import { interruptible, stopChild, stopChildren, track } from '../children.js';
import { freePort, waitPort } from '../ports.js';
import { asStrataRuns } from '../strata-env.js';
import { MALLOC_TUNABLES } from '../../src/cli/node-env.js';
import { median } from '../stats.js';
import { judge, verdictLines, type Sample } from './verdict.js';

export interface Running {
  uri: string;
  stop(): Promise<void>;
}

export interface BenchTarget {
  name: string;
  /** A variant's strata target (variantTarget): the report adds the variant's ratio to it. */
  base?: string;
  start(file: string, port: number): Promise<Running>;
}

export interface Job {
  name: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  bs: string;
  iodepth: number;
}

export const JOBS: Job[] = [
  { name: 'seq-read-1M-qd16', rw: 'read', bs: '1M', iodepth: 16 },
  { name: 'seq-write-1M-qd16', rw: 'write', bs: '1M', iodepth: 16 },
  { name: 'rand-read-4k-qd32', rw: 'randread', bs: '4k', iodepth: 32 },
  { name: 'rand-write-4k-qd32', rw: 'randwrite', bs: '4k', iodepth: 32 },
];

/**
 * A strata device as the benchmark serves it: how to open it on the bench
 * file, and what to clean up after it is closed.
 */
export interface StrataDevice {
  /**
   * Set up what `open` serves, in a process of its own that exits before the server starts
   * (`--prepare NAME FILE`): the server then starts as the peers do, with nothing of the
   * set-up in its memory (see poolTarget).
   */
  prepare?(file: string): Promise<void>;
  open(file: string): Promise<BlockDevice>;
  close?(dev: BlockDevice): Promise<void>;
}

/**
 * The hook for more strata cases: serve whatever BlockDevice `open` builds
 * (it receives the benchmark file; a pool volume may ignore it), from a
 * server process of its own, as qemu-nbd and nbdkit are: this file run
 * with `--serve NAME FILE PORT` (serveMain below). In this process, the
 * harness's own work (spawning fio, parsing its JSON) and every other strata
 * target's heap and garbage collections shared the server's one thread:
 * pool-volume 1 MiB writes measured 286-476 MB/s in-process against 540-750
 * alone, and the gap moved with the job order.
 */
export function strataTarget(name: string, dev: StrataDevice): BenchTarget {
  STRATA_DEVICES.set(name, dev);
  return { name, start: (file, port) => startStrata(name, file, port) };
}

/**
 * Start strata target `base`'s server on `file`: its set-up process first (if it has
 * one), then the server. `script` is the run.js to run (another build's, for a variant);
 * `env` is added to this process's environment.
 */
async function startStrata(base: string, file: string, port: number, script = fileURLToPath(import.meta.url), env: Record<string, string> = {}): Promise<Running> {
  // Same node, flags and environment (the malloc tunables asStrataRuns() set) as this process.
  // With an IPC channel: the server stops when this process goes away, however it went.
  const self = (...a: string[]) =>
    track(spawn(process.execPath, [...process.execArgv, script, ...a], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } }));
  if (STRATA_DEVICES.get(base)?.prepare) {
    const prep = self('--prepare', base, file);
    const code = await new Promise<number | null>((resolve) => prep.once('exit', resolve));
    if (code !== 0) throw new Error(`strata target ${base}: preparing failed (exit ${code})`);
  }
  const child = self('--serve', base, file, String(port));
  await waitPort('127.0.0.1', port, child, 60_000);
  return {
    uri: `nbd://127.0.0.1:${port}/disk`,
    stop: () => stopChild(child),
  };
}

/**
 * `--variant NAME=BASE[:K=V,...]`: strata target BASE once more under NAME, its
 * server given the environment variables K=V, and with `dist=DIR` run from another
 * build (a copy of dist/ made before a change). The A/B of a change then runs in
 * the same run as everything else, alternated with it round by round, and the
 * report adds NAME's ratio to BASE. NAME serves a symlink to the bench file, so a
 * pool target's pool (kept beside its file) is its own.
 */
export function variantTarget(spec: string): BenchTarget {
  const m = /^([\w.-]+)=([\w-]+)(?::(.*))?$/.exec(spec);
  if (!m) throw new Error(`bad --variant '${spec}' (expected NAME=BASE[:K=V,...])`);
  const [, name, base, rest] = m as unknown as [string, string, string, string | undefined];
  if (!STRATA_DEVICES.has(base)) throw new Error(`--variant ${name}: no strata target '${base}' (${[...STRATA_DEVICES.keys()].join(', ')})`);
  const env: Record<string, string> = {};
  let script: string | undefined;
  for (const kv of rest ? rest.split(',') : []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--variant ${name}: bad setting '${kv}' (expected K=V)`);
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (k === 'dist') script = path.resolve(v, 'bench', 'nbd', 'run.js');
    else env[k] = v;
  }
  if (script && !existsSync(script)) throw new Error(`--variant ${name}: ${script} does not exist`);
  return {
    name,
    base,
    async start(file, port) {
      const link = `${file}.${name}`;
      await rm(link, { force: true });
      await symlink(file, link);
      const r = await startStrata(base, link, port, script, env);
      const stop = async () => {
        await r.stop();
        await rm(link, { force: true });
      };
      return { uri: r.uri, stop };
    },
  };
}

/** The bench file and everything named after it: a pool's home and device, variants' links and theirs. */
async function removeBenchFiles(file: string): Promise<void> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name === base || name.startsWith(`${base}.`)) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Every strata target's device, by name, for the server processes. */
const STRATA_DEVICES = new Map<string, StrataDevice>();

/** A strata target's set-up process (StrataDevice.prepare). */
async function prepareMain(name: string, file: string): Promise<void> {
  const dev = STRATA_DEVICES.get(name);
  if (!dev?.prepare) throw new Error(`no strata target '${name}' to prepare`);
  process.once('disconnect', () => process.exit(1)); // the bench is gone: it cleans up nothing more
  process.channel?.unref();
  await dev.prepare(file);
  process.exit(0); // (helper threads the pool started must not keep this process alive)
}

/** A strata target's server process: open the device, serve it as `disk`, and on SIGTERM close all and exit. */
async function serveMain(name: string, file: string, port: number): Promise<void> {
  const dev = STRATA_DEVICES.get(name);
  if (!dev) throw new Error(`no strata target '${name}'`);
  const device = await dev.open(file);
  const server = new NbdServer({ exports: { disk: { device } } });
  await server.listen(port, '127.0.0.1');
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    void (async () => {
      await server.close();
      await (dev.close ? dev.close(device) : device.close());
      process.exit(0);
    })().catch((e) => {
      console.error(`strata target ${name}: ${(e as Error).message}`);
      process.exit(1);
    });
  };
  // SIGINT too: Ctrl-C reaches the whole process group. 'disconnect': the bench that
  // started this server is gone (the IPC channel startStrata opened closed).
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  process.once('disconnect', shutdown);
  process.channel?.unref(); // (the channel alone must not keep the server alive)
}

/**
 * The peers run as their users run them: without the malloc tunables this
 * process got from asStrataRuns() (bin/strata's; the peers' own defaults
 * otherwise). STRATA_BENCH_PEER_TUNABLES=1 gives them the same tunables, to
 * measure what the setting alone is worth to them (a lot: qemu-nbd's 1 MiB
 * writes went from ~800 to ~3000 MB/s here, bench/README.md).
 */
function peerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (process.env['STRATA_BENCH_PEER_TUNABLES'] !== '1' && env['GLIBC_TUNABLES'] === MALLOC_TUNABLES) delete env['GLIBC_TUNABLES'];
  return env;
}

function external(name: string, cmd: string, args: (file: string, port: number) => string[], uri: (port: number) => string): BenchTarget {
  return {
    name,
    async start(file, port) {
      const child = track(spawn(cmd, args(file, port), { stdio: ['ignore', 'ignore', 'inherit'], env: peerEnv() }));
      await waitPort('127.0.0.1', port, child, 10_000);
      return {
        uri: uri(port),
        stop: () => stopChild(child),
      };
    },
  };
}

/**
 * strata serving a pool volume with default properties (lz4, fletcher4, 16K
 * blocks): a pool device beside the bench file, a volume of the same size,
 * pre-filled with the bench file's contents so reads read real data.
 *
 * The device file is allocated in full (fallocate) once the pool is
 * created, as the file the peers serve is (prepareFile writes every byte).
 * Sparse, the pool's first pass over new space paid tmpfs for every page it
 * touched first (allocate and zero): 55% of the server's main thread in
 * synchronous device writes, and round-1 seq write at 210-294 MB/s against
 * 580-800 once the pages existed; that was the "two modes" of pool seq
 * write. Copy-on-write writes to new space where the peers overwrite in
 * place, so only a preallocated device compares the servers.
 *
 * The pool is created and filled in a process of its own (prepare), and the
 * server imports it, as `strata serve` does on a pool made before. Filled
 * by the server itself, the fill's ~1.3 GB of cached payloads and dirty
 * data were still in its memory when the jobs began, and round 1 of seq
 * write, which frees them, ran 734-813 MB/s against 858-1123 in rounds 2-3.
 */
function poolTarget(): BenchTarget {
  let mgr: PoolManager | null = null;
  let home = '';
  const remove = async (h: string) => {
    await rm(h, { recursive: true, force: true });
    await rm(`${h}.dev`, { force: true });
  };
  return strataTarget('strata-pool', {
    async prepare(file) {
      const size = (await stat(file)).size;
      const h = `${file}.pool`;
      const m = new PoolManager(h);
      try {
        await m.poolCreate('bench', { groups: [{ type: 'single', paths: [`${h}.dev`] }], createSize: Math.max(2 * size + 512 * 1024 * 1024, 1024 * 1024 * 1024) });
        // Allocates the holes only; the labels poolCreate wrote stay.
        execFileSync('fallocate', ['-l', String((await stat(`${h}.dev`)).size), `${h}.dev`]);
        await m.create('bench/vol', { volsize: String(size), sparse: true });
        const { volume } = await m.openVolume('bench/vol');
        const src = await RawDevice.open(file, { readOnly: true });
        await copyDevice(src, volume);
        await src.close();
        await m.close();
      } catch (e) {
        await m.close().catch(() => {});
        await remove(h);
        throw e;
      }
    },
    async open(file) {
      home = `${file}.pool`;
      mgr = new PoolManager(home);
      return (await mgr.openVolume('bench/vol')).volume;
    },
    async close() {
      await mgr?.close();
      await remove(home);
    },
  });
}

export const TARGETS: BenchTarget[] = [
  strataTarget('strata-raw', { open: (file) => RawDevice.open(file) }),
  poolTarget(),
  external('qemu-nbd', 'qemu-nbd', (f, p) => ['-f', 'raw', '--cache=writeback', '-b', '127.0.0.1', '-p', String(p), '-x', 'disk', '-t', f], (p) => `nbd://127.0.0.1:${p}/disk`),
  external('nbdkit', 'nbdkit', (f, p) => ['-f', '-i', '127.0.0.1', '-p', String(p), 'file', f], (p) => `nbd://127.0.0.1:${p}/`),
];

export type { Sample };

async function fio(uri: string, job: Job, size: string, runtime: number): Promise<Sample> {
  const args = [
    `--name=${job.name}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--size=${size}`,
    '--time_based',
    `--runtime=${runtime}`,
    '--ramp_time=1',
    '--output-format=json',
  ];
  const out = await new Promise<string>((resolve, reject) => {
    // fio's stderr is kept for its failure: an interrupted run stops fio mid-job, and its
    // complaints about every request in flight are no news then.
    const child = track(spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let s = '';
    let e = '';
    child.stdout.on('data', (d) => (s += d));
    child.stderr.on('data', (d) => (e = (e + d).slice(-4000)));
    child.once('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`fio exited ${code}${e ? `:\n${e.trimEnd()}` : ''}`))));
  });
  const j = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  const side = job.rw.includes('read') ? j.read : j.write;
  return { mbps: side.bw_bytes / 1e6, iops: side.iops };
}

export interface BenchOptions {
  dir: string;
  size: number;
  runtime: number;
  rounds: number;
  targets: BenchTarget[];
  jobs: Job[];
  /** First port to use (targets get consecutive ports); 0 picks free ports. */
  basePort: number;
  log(line: string): void;
}

export interface BenchResult {
  date: string;
  file: string;
  size: number;
  runtime: number;
  rounds: number;
  samples: Record<string, Record<string, Sample[]>>;
  medians: Record<string, Record<string, Sample>>;
  ratios: Record<string, Record<string, number>>;
  /** The issue's targets judged on this run (verdict.ts). */
  verdict: ReturnType<typeof judge>;
}

/** Write the benchmark file with real (non-zero) data so reads touch data, not holes. */
async function prepareFile(file: string, size: number): Promise<void> {
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < chunk.length; i += 8) chunk.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < size; off += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, size - off), off);
  await fh.close();
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const file = path.join(o.dir, `strata-nbd-bench-${process.pid}.raw`);
  // Interrupted: the servers stop before their files go (a pool server removes its pool on close).
  const cleanup = async () => {
    await stopChildren();
    await removeBenchFiles(file);
  };
  return interruptible({ what: `${file}*`, cleanup }, () => runBenchOn(file, o));
}

async function runBenchOn(file: string, o: BenchOptions): Promise<BenchResult> {
  o.log(`preparing ${file} (${o.size} bytes)`);
  await prepareFile(file, o.size);
  const running = new Map<string, Running>();
  const samples: BenchResult['samples'] = {};
  try {
    for (const [i, t] of o.targets.entries()) {
      running.set(t.name, await t.start(file, o.basePort ? o.basePort + i : await freePort()));
      samples[t.name] = Object.fromEntries(o.jobs.map((j) => [j.name, [] as Sample[]]));
    }
    for (let round = 0; round < o.rounds; round++) {
      for (const job of o.jobs) {
        // Rotate who goes first so page-cache warmth and writeback are shared fairly.
        const order = o.targets.map((_, k) => o.targets[(k + round) % o.targets.length]!);
        for (const t of order) {
          const smp = await fio(running.get(t.name)!.uri, job, `${o.size}`, o.runtime);
          samples[t.name]![job.name]!.push(smp);
          o.log(`round ${round + 1} ${job.name.padEnd(20)} ${t.name.padEnd(12)} ${smp.mbps.toFixed(0).padStart(6)} MB/s ${smp.iops.toFixed(0).padStart(8)} IOPS`);
        }
      }
    }
  } finally {
    for (const r of running.values()) await r.stop().catch(() => {});
    await removeBenchFiles(file);
  }
  const medians: BenchResult['medians'] = {};
  for (const [t, byJob] of Object.entries(samples)) {
    medians[t] = Object.fromEntries(
      Object.entries(byJob).map(([j, xs]) => [j, { mbps: median(xs.map((x) => x.mbps)), iops: median(xs.map((x) => x.iops)) }]),
    );
  }
  const ratios: BenchResult['ratios'] = {};
  const ratio = (a: string, b: string) => {
    ratios[`${a}/${b}`] = Object.fromEntries(o.jobs.map((j) => [j.name, medians[a]![j.name]!.mbps / medians[b]![j.name]!.mbps]));
  };
  const ours = (t: BenchTarget) => t.base !== undefined || t.name.startsWith('strata');
  for (const t of o.targets.filter(ours)) for (const ref of o.targets.filter((x) => !ours(x))) ratio(t.name, ref.name);
  // A variant against its own base, when that ran too.
  for (const t of o.targets) if (t.base && medians[t.base]) ratio(t.name, t.base);
  const verdict = judge(samples);
  return { date: new Date().toISOString(), file, size: o.size, runtime: o.runtime, rounds: o.rounds, samples, medians, ratios, verdict };
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
}

export function report(r: BenchResult): string {
  const names = Object.keys(r.medians);
  const jobs = Object.keys(r.medians[names[0]!] ?? {});
  const lines = [`medians of ${r.rounds} rounds, ${r.runtime}s each (MB/s | IOPS)`];
  lines.push(['job'.padEnd(20), ...names.map((n) => n.padStart(22))].join(' '));
  for (const j of jobs) {
    lines.push([j.padEnd(20), ...names.map((n) => `${r.medians[n]![j]!.mbps.toFixed(0)} | ${r.medians[n]![j]!.iops.toFixed(0)}`.padStart(22))].join(' '));
  }
  lines.push('');
  for (const [pair, byJob] of Object.entries(r.ratios)) {
    lines.push(`${pair.padEnd(26)} ${Object.entries(byJob).map(([j, x]) => `${j} ${x.toFixed(2)}x`).join('  ')}`);
  }
  const v = r.verdict ?? judge(r.samples); // results written before verdicts existed
  if (v.length) lines.push('', ...verdictLines(v));
  return lines.join('\n');
}

async function main(): Promise<void> {
  await asStrataRuns();
  const args = process.argv.slice(2);
  if (args[0] === '--serve') return serveMain(args[1]!, args[2]!, Number(args[3]));
  if (args[0] === '--prepare') return prepareMain(args[1]!, args[2]!);
  const opt = (name: string, def: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] ? args[i + 1]! : def;
  };
  const only = opt('only', '');
  const variants: BenchTarget[] = [];
  for (let i = 0; i < args.length; i++) if (args[i] === '--variant' && args[i + 1]) variants.push(variantTarget(args[++i]!));
  const targets = [...(only ? TARGETS.filter((t) => only.split(',').includes(t.name)) : TARGETS), ...variants];
  const jobFilter = opt('jobs', '');
  const jobs = jobFilter ? JOBS.filter((j) => jobFilter.split(',').includes(j.name)) : JOBS;
  const r = await runBench({
    dir: opt('dir', existsSync('/dev/shm') ? '/dev/shm' : tmpdir()),
    size: parseSize(opt('size', '1G')),
    runtime: Number(opt('runtime', '8')),
    // Five: a median of five shrugs off two odd rounds (a cold first round, a noisy peer);
    // single rounds here swing by up to 2x for every server, the peers included.
    rounds: Number(opt('rounds', '5')),
    targets,
    jobs,
    basePort: Number(opt('port', '0')), // 0: pick free ports
    log: (l) => console.log(l),
  });
  console.log(`\n${report(r)}`);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/bench/nbd -> bench/results (or bench/nbd -> bench/results when run from source).
  const root = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, '../../../bench/results') : path.resolve(here, '../results');
  await mkdir(root, { recursive: true });
  const out = path.join(root, `nbd-${r.date.replace(/[:.]/g, '-')}.json`);
  await writeFile(out, JSON.stringify(r, null, 2));
  console.log(`\nwrote ${out}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
