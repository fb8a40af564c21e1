/**
 * qcow2 benchmark (not a test; timings never go into tests).
 *
 * 1. convert raw -> qcow2 and qcow2 -> raw of a 1 GiB image (half data, half
 *    holes, alternating 1 MiB), `strata image convert` (the installed
 *    command, bin/strata, as users run it) vs `qemu-img convert`, both as
 *    child processes in this process's environment, alternating A/B,
 *    medians and ratios. Node's own start-up is reported too, with and
 *    without NODE_EXTRA_CA_CERTS when that is set (Node parses that
 *    certificate file at every start, before any of our code runs, so
 *    bin/strata starts it without).
 * 2. random 4 KiB reads through a backing chain of depth 1, 10 and 50
 *    (l0 holds data in its first half, every layer above one 64 KiB cluster):
 *    - in-process, one read at a time and 32 at a time (our merged chain
 *      index; medians of the rounds after a warm-up pass), with
 *      `qemu-img bench` on the same chain as a reference for how QEMU's read
 *      cost grows with depth (strided, not random: the trend only);
 *    - over NBD: strata's NbdServer serving the chain (openImage, read-only)
 *      vs `qemu-nbd -r -f qcow2 --cache=writeback` serving the same files,
 *      measured with fio ioengine=nbd, rand read 4K QD32; medians of the
 *      rounds. Within a round every depth and both servers are measured,
 *      the order rotating, so drifting load on a shared machine spreads
 *      evenly. The chains share their base layer (1 GiB, half data).
 *
 * Usage: node dist/bench/qcow2/run.js [--size-mib N] [--runs N] [--reads N]
 *          [--rounds N] [--runtime S] [--chain-size-mib N] [--depths 1,10,50]
 *          [--only convert,chain,nbd] [--dir DIR]
 * qemu-img convert's default cache mode (unsafe) never syncs the output;
 * strata syncs it by default (DESIGN: durable when the command returns), so
 * both pairings are measured. The default directory is /dev/shm (where it
 * exists), so the numbers measure the codecs and servers, not the disk.
 * Writes bench/results/qcow2-<date>-<dir>.json. Interrupted (Ctrl-C, SIGTERM,
 * SIGHUP, `| head`), it stops fio and its qemu-nbd servers and removes its
 * directory (bench/children.ts); a synchronous command (a timed convert, qemu-img
 * bench, a chain layer) finishes first.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openImage } from '../../formats/image-format.js';
import type { BlockDevice } from '../../src/device/block-device.js';
import { NbdServer } from '../../src/nbd/index.js';
import { checkpoint, interruptible, stopChild, stopChildren, track } from '../children.js';
import { freePort, waitPort } from '../ports.js';
import { median } from '../stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
// The real `strata` command, as users run it (`strata image convert ...`):
// package.json's bin, bin/strata (which starts Node without
// NODE_EXTRA_CA_CERTS, see there).
const cli = join(repo, 'bin', 'strata');
const MIB = 1024 * 1024;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function argStr(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

function timed(cmd: string, args: string[], env?: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env });
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return t;
}

function makeHalfData(path: string, size: number): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  const buf = Buffer.alloc(MIB);
  let x = 12345;
  for (let i = 0; i < MIB; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buf.writeUInt32LE(x, i);
  }
  for (let off = 0; off < size; off += 2 * MIB) {
    buf.writeUInt32LE(off >>> 0, 0); // every data MiB differs
    writeSync(fd, buf, 0, MIB, off);
  }
  closeSync(fd);
}

async function convertBench(dir: string, size: number, runs: number) {
  const raw = join(dir, 'src.raw');
  makeHalfData(raw, size);
  const q = join(dir, 'src.qcow2');
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, q]);
  // Two pairings: durable output (strata's default vs qemu-img -t writeback,
  // both sync at the end) and unsafe (strata -t unsafe vs qemu-img's default,
  // neither syncs).
  const cases: Array<{ name: string; strata: string[]; qemu: string[] }> = [];
  for (const [mode, sArgs, qArgs] of [
    ['durable', [], ['-t', 'writeback']],
    ['unsafe', ['-t', 'unsafe'], []],
  ] as Array<[string, string[], string[]]>) {
    cases.push({ name: `raw->qcow2 ${mode}`, strata: [...sArgs, '-f', 'raw', '-O', 'qcow2', raw], qemu: [...qArgs, '-f', 'raw', '-O', 'qcow2', raw] });
    cases.push({ name: `qcow2->raw ${mode}`, strata: [...sArgs, '-f', 'qcow2', '-O', 'raw', q], qemu: [...qArgs, '-f', 'qcow2', '-O', 'raw', q] });
  }
  const out: Record<string, { strata: number[]; qemu: number[] }> = {};
  for (const c of cases) out[c.name] = { strata: [], qemu: [] };
  for (let i = 0; i < runs; i++) {
    for (const c of cases) {
      // Alternate which tool goes first so cache warmth favours neither.
      const order = i % 2 === 0 ? ['strata', 'qemu'] : ['qemu', 'strata'];
      for (const who of order) {
        await checkpoint(); // (the commands are synchronous: a signal is handled between them)
        const dst = join(dir, `out-${who}`);
        if (who === 'strata') out[c.name]!.strata.push(timed(cli, ['image', 'convert', ...c.strata, dst]));
        else out[c.name]!.qemu.push(timed('qemu-img', ['convert', ...c.qemu, dst]));
        rmSync(dst, { force: true });
      }
    }
  }
  const res: Record<string, unknown> = {};
  // Start-up, for reference: node alone, `strata image` (what convert pays
  // before copying) and the whole program (`strata --help` loads every group).
  await checkpoint();
  const startup = median([0, 1, 2, 3, 4].map(() => timed(cli, ['--help'])));
  const imageStartup = median([0, 1, 2, 3, 4].map(() => timed(cli, ['image', '--help'])));
  const nodeStartup = median([0, 1, 2, 3, 4].map(() => timed(process.execPath, ['-e', '0'])));
  const caFile = process.env['NODE_EXTRA_CA_CERTS'];
  const { NODE_EXTRA_CA_CERTS: _, ...withoutCa } = process.env;
  const nodeNoCa = caFile ? median([0, 1, 2, 3, 4].map(() => timed(process.execPath, ['-e', '0'], withoutCa))) : nodeStartup;
  res['startup'] = { strataMainSec: startup, strataImageSec: imageStartup, nodeSec: nodeStartup, nodeExtraCaCerts: caFile ?? null, nodeWithoutExtraCaSec: nodeNoCa };
  const ca = caFile ? ` (${nodeNoCa.toFixed(3)} s without NODE_EXTRA_CA_CERTS=${caFile})` : '';
  console.log(`start-up: node alone ${nodeStartup.toFixed(3)} s${ca}, strata image --help ${imageStartup.toFixed(3)} s, strata --help ${startup.toFixed(3)} s`);
  const mbps = (sec: number) => size / 2 / sec / 1e6; // guest data bytes copied per second
  for (const [k, v] of Object.entries(out)) {
    const s = median(v.strata);
    const qm = median(v.qemu);
    res[k] = { strataSec: s, qemuSec: qm, strataDataMBps: mbps(s), qemuDataMBps: mbps(qm), speedRatio: qm / s, runs: v };
    console.log(
      `convert ${k.padEnd(18)}: strata ${s.toFixed(3)} s (${mbps(s).toFixed(0)} MB/s of data), qemu-img ${qm.toFixed(3)} s (${mbps(qm).toFixed(0)} MB/s), strata speed = ${(qm / s).toFixed(2)}x qemu-img`,
    );
  }
  rmSync(raw, { force: true });
  rmSync(q, { force: true });
  return res;
}

/**
 * The chains share one base: `base.qcow2` (data in its first half) is layer
 * 0 of every chain; chain<depth>/l1..l<depth-1> each write one 64 KiB
 * cluster. Depth 1 is the base alone.
 */
function buildBase(dir: string, size: number): string {
  const base = join(dir, 'base.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(size)]);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 1 0 ${size / 2}`, base], { stdio: 'ignore' });
  return base;
}

async function buildChain(dir: string, depth: number, size: number): Promise<string> {
  if (depth === 1) return join(dir, 'base.qcow2');
  const d = join(dir, `chain${depth}`);
  mkdirSync(d);
  const clusters = size / 65536;
  for (let i = 1; i < depth; i++) {
    await checkpoint();
    const f = join(d, `l${i}.qcow2`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', i === 1 ? '../base.qcow2' : `l${i - 1}.qcow2`, '-F', 'qcow2', f]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${i % 250} ${((i * 7919) % clusters) * 65536} 64k`, f], { stdio: 'ignore' });
  }
  return join(d, `l${depth - 1}.qcow2`);
}

/** In-process random 4 KiB reads, one at a time: a warm-up pass (index, caches, JIT), then timed passes. */
async function readPass(dev: BlockDevice, size: number, reads: number, seed: { x: number }): Promise<number> {
  const buf = Buffer.alloc(4096);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) {
    seed.x = (Math.imul(seed.x, 1103515245) + 12345) >>> 0;
    await dev.read((seed.x % (size / 4096)) * 4096, 4096, buf);
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const QEMU_BENCH_READS = 20000;

/** The same reads with 32 in flight (what an NBD client at QD32 asks of the device, without the network). */
async function readPassQd32(dev: BlockDevice, size: number, reads: number, seed: { x: number }): Promise<number> {
  let left = reads;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      const buf = Buffer.alloc(4096);
      while (left-- > 0) {
        seed.x = (Math.imul(seed.x, 1103515245) + 12345) >>> 0;
        await dev.read((seed.x % (size / 4096)) * 4096, 4096, buf);
      }
    }),
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** qemu-img bench: strided 4 KiB reads (not random, no warm-up control), for the depth trend only. */
function qemuImgBench(top: string, reads: number): number {
  const q = spawnSync('qemu-img', ['bench', '-f', 'qcow2', '-c', String(reads), '-d', '1', '-s', '4096', '-S', String(4096 * 7919), top], { encoding: 'utf8' });
  const m = /Run completed in ([\d.]+) seconds/.exec(q.stdout);
  return m ? Number(m[1]) : NaN;
}

interface Served {
  uri: string;
  stop(): Promise<void>;
}

async function serveStrata(top: string): Promise<Served> {
  const device = await openImage(top, { readOnly: true });
  const server = new NbdServer({ exports: { disk: { device } } });
  const port = await freePort();
  await server.listen(port, '127.0.0.1');
  return {
    uri: `nbd://127.0.0.1:${port}/disk`,
    async stop() {
      await server.close();
      await device.close();
    },
  };
}

async function serveQemu(top: string): Promise<Served> {
  const port = await freePort();
  // stderr is kept for failures only: the port probe makes qemu-nbd log a failed negotiation.
  const child = track(spawn('qemu-nbd', ['-r', '-f', 'qcow2', '--cache=writeback', '-b', '127.0.0.1', '-p', String(port), '-t', top], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    await waitPort('127.0.0.1', port, child, 10_000);
  } catch (e) {
    throw new Error(`qemu-nbd: ${(e as Error).message}: ${stderr}`);
  }
  return {
    uri: `nbd://127.0.0.1:${port}/`,
    stop: () => stopChild(child),
  };
}

/** fio ioengine=nbd, random 4 KiB reads at queue depth 32 (the fio process runs while our event loop serves). */
async function fioRandRead(uri: string, size: number, runtime: number): Promise<{ iops: number; mbps: number }> {
  const args = [
    '--name=randread-4k-qd32',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randread',
    '--bs=4k',
    '--iodepth=32',
    `--size=${size}`,
    '--time_based',
    `--runtime=${runtime}`,
    '--ramp_time=1',
    '--output-format=json',
  ];
  const out = await new Promise<string>((ok, fail) => {
    // fio's stderr is kept for its failure: an interrupted run stops fio mid-job, and its
    // complaints about every request in flight are no news then.
    const child = track(spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let s = '';
    let e = '';
    child.stdout.on('data', (d) => (s += d));
    child.stderr.on('data', (d) => (e = (e + d).slice(-4000)));
    child.once('exit', (code) => (code === 0 ? ok(s) : fail(new Error(`fio exited ${code}${e ? `:\n${e.trimEnd()}` : ''}`))));
  });
  const r = JSON.parse(out.slice(out.indexOf('{'))).jobs[0].read;
  return { iops: r.iops, mbps: r.bw_bytes / 1e6 };
}

/**
 * Every measurement alternates across depths and servers within each round
 * (load on a shared machine drifts over minutes; a depth measured alone at
 * the end would carry the drift).
 */
async function chainBench(dir: string, depths: number[], size: number, o: { inProcess: boolean; nbd: boolean; reads: number; rounds: number; runtime: number }) {
  buildBase(dir, size);
  const tops = new Map<number, string>();
  for (const d of depths) tops.set(d, await buildChain(dir, d, size));
  const res: Record<string, Record<string, unknown>> = Object.fromEntries(depths.map((d) => [`depth${d}`, {}]));
  if (o.inProcess) {
    const devs = new Map<number, BlockDevice>();
    for (const d of depths) devs.set(d, await openImage(tops.get(d)!, { readOnly: true }));
    const seed = { x: 99 };
    const strata = new Map(depths.map((d) => [d, [] as number[]]));
    const strata32 = new Map(depths.map((d) => [d, [] as number[]]));
    const qemu = new Map(depths.map((d) => [d, [] as number[]]));
    for (const d of depths) await readPass(devs.get(d)!, size, o.reads, seed); // warm-up
    for (let round = 0; round < Math.max(3, o.rounds); round++) {
      for (const d of round % 2 ? [...depths].reverse() : depths) {
        strata.get(d)!.push(await readPass(devs.get(d)!, size, o.reads, seed));
        strata32.get(d)!.push(await readPassQd32(devs.get(d)!, size, o.reads, seed));
        await checkpoint();
        qemu.get(d)!.push(qemuImgBench(tops.get(d)!, QEMU_BENCH_READS));
      }
    }
    for (const d of depths) {
      await devs.get(d)!.close();
      const sec = median(strata.get(d)!);
      const sec32 = median(strata32.get(d)!);
      const qsec = median(qemu.get(d)!);
      const qRate = QEMU_BENCH_READS / qsec;
      res[`depth${d}`]!['inProcess'] = {
        reads: o.reads,
        strataSec: sec,
        strataReadsPerSec: o.reads / sec,
        strataQd32ReadsPerSec: o.reads / sec32,
        qemuImgBenchReads: QEMU_BENCH_READS,
        qemuImgBenchSec: qsec,
        qemuReadsPerSec: qRate,
      };
      console.log(
        `chain depth ${String(d).padStart(2)} in-process: strata ${(o.reads / sec).toFixed(0)} reads/s (QD1), ${(o.reads / sec32).toFixed(0)} reads/s (QD32); qemu-img bench ${qRate.toFixed(0)} reads/s`,
      );
    }
  }
  if (o.nbd) {
    const servers = new Map<string, Served>();
    const key = (who: string, d: number) => `${who}@${d}`;
    const samples = new Map<string, Array<{ iops: number; mbps: number }>>();
    try {
      for (const d of depths) {
        servers.set(key('strata', d), await serveStrata(tops.get(d)!));
        servers.set(key('qemu-nbd', d), await serveQemu(tops.get(d)!));
      }
      for (let round = 0; round < o.rounds; round++) {
        for (const d of round % 2 ? [...depths].reverse() : depths) {
          const order = (round + depths.indexOf(d)) % 2 === 0 ? ['strata', 'qemu-nbd'] : ['qemu-nbd', 'strata'];
          for (const who of order) {
            const s = await fioRandRead(servers.get(key(who, d))!.uri, size, o.runtime);
            (samples.get(key(who, d)) ?? samples.set(key(who, d), []).get(key(who, d))!).push(s);
            console.log(`  round ${round + 1} depth ${String(d).padStart(2)} ${who.padEnd(8)} ${s.iops.toFixed(0).padStart(7)} IOPS ${s.mbps.toFixed(1).padStart(7)} MB/s`);
          }
        }
      }
    } finally {
      for (const s of servers.values()) await s.stop().catch(() => undefined);
    }
    for (const d of depths) {
      const med = (who: string) => {
        const xs = samples.get(key(who, d))!;
        return { iops: median(xs.map((x) => x.iops)), mbps: median(xs.map((x) => x.mbps)) };
      };
      const sm = med('strata');
      const qm = med('qemu-nbd');
      res[`depth${d}`]!['nbd'] = {
        job: 'randread 4k QD32',
        rounds: o.rounds,
        runtimeSec: o.runtime,
        strata: sm,
        qemuNbd: qm,
        ratio: sm.iops / qm.iops,
        samples: { strata: samples.get(key('strata', d)), qemuNbd: samples.get(key('qemu-nbd', d)) },
      };
      console.log(
        `chain depth ${String(d).padStart(2)} NBD rand read 4K QD32: strata ${sm.iops.toFixed(0)} IOPS (${sm.mbps.toFixed(1)} MB/s), qemu-nbd ${qm.iops.toFixed(0)} IOPS (${qm.mbps.toFixed(1)} MB/s), strata = ${(sm.iops / qm.iops).toFixed(2)}x qemu-nbd`,
      );
    }
  }
  // How read cost grows with depth: rate at each depth relative to the first depth.
  const first = res[`depth${depths[0]}`] as Record<string, any>;
  const growth: Record<string, unknown> = {};
  for (const depth of depths) {
    const d = res[`depth${depth}`] as Record<string, any>;
    growth[`depth${depth}`] = {
      strataInProcess: d['inProcess'] ? d['inProcess'].strataReadsPerSec / first['inProcess'].strataReadsPerSec : undefined,
      strataInProcessQd32: d['inProcess'] ? d['inProcess'].strataQd32ReadsPerSec / first['inProcess'].strataQd32ReadsPerSec : undefined,
      qemuImgBench: d['inProcess'] ? d['inProcess'].qemuReadsPerSec / first['inProcess'].qemuReadsPerSec : undefined,
      strataNbd: d['nbd'] ? d['nbd'].strata.iops / first['nbd'].strata.iops : undefined,
      qemuNbd: d['nbd'] ? d['nbd'].qemuNbd.iops / first['nbd'].qemuNbd.iops : undefined,
    };
  }
  res['relativeToFirstDepth'] = growth;
  const fmt = (x: unknown) => (typeof x === 'number' ? `${x.toFixed(2)}x` : '-');
  for (const depth of depths) {
    const g = growth[`depth${depth}`] as Record<string, unknown>;
    console.log(
      `depth ${String(depth).padStart(2)} vs ${depths[0]}: strata in-process ${fmt(g['strataInProcess'])} (QD32 ${fmt(g['strataInProcessQd32'])}), qemu-img bench ${fmt(g['qemuImgBench'])}, strata NBD ${fmt(g['strataNbd'])}, qemu-nbd ${fmt(g['qemuNbd'])}`,
    );
  }
  rmSync(join(dir, 'base.qcow2'), { force: true });
  for (const d of depths) if (d > 1) rmSync(join(dir, `chain${d}`), { recursive: true, force: true });
  return res;
}

// The default is /dev/shm: it measures the codecs and servers without the host disk's write-back noise.
const base = argStr('--dir', existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
const only = argStr('--only', 'convert,chain,nbd').split(',');
const dir = mkdtempSync(join(base, 'strata-bench-qcow2-'));
// Interrupted: the servers stop before their files go; the in-process server goes with process.exit.
const cleanup = async () => {
  await stopChildren();
  await rm(dir, { recursive: true, force: true });
};
await interruptible({ what: dir, cleanup }, async () => {
  try {
    const sizeMiB = arg('--size-mib', 1024);
    const chainSizeMiB = arg('--chain-size-mib', 1024);
    const depths = argStr('--depths', '1,10,50').split(',').map(Number);
    const convert = only.includes('convert') ? await convertBench(dir, sizeMiB * MIB, arg('--runs', 5)) : undefined;
    const chain =
      only.includes('chain') || only.includes('nbd')
        ? await chainBench(dir, depths, chainSizeMiB * MIB, {
            inProcess: only.includes('chain'),
            nbd: only.includes('nbd'),
            reads: arg('--reads', 100000),
            rounds: arg('--rounds', 3),
            runtime: arg('--runtime', 5),
          })
        : undefined;
    const result = { date: new Date().toISOString(), host: { node: process.version, dir: base }, sizeMiB, chainSizeMiB, convert, chain };
    mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
    const outFile = join(repo, 'bench', 'results', `qcow2-${result.date.replace(/[:.]/g, '-')}-${base.replace(/\W+/g, '_')}.json`);
    writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
    console.log(`wrote ${outFile}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
