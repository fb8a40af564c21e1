/**
 * bench/pool/throughput: a pool volume's BlockDevice in-process against the
 * same pattern on a raw file (formats/raw RawDevice), in the same run,
 * alternating A/B, medians of several rounds.
 *
 *   node dist/bench/pool/throughput.js [--size 512M] [--rounds 3] [--qd 16]
 *
 * Jobs: sequential 1 MiB write (+flush) and read; random 4 KiB write (+flush)
 * and read (read after a warm-up pass, i.e. cached). Data sets: random bytes
 * and half-zero (every other 64 KiB zero). Default properties: lz4,
 * fletcher4, 16K volblocksize.
 * Prints MB/s, IOPS and strata/raw ratios; writes bench/results/pool-throughput.json.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { BlockDevice } from '../../src/device/block-device.js';
import { PoolManager } from '../../src/daemon/services.js';
import { RawDevice } from '../../formats/raw/index.js';
import { parseSize } from '../../src/pool/dataset/units.js';
import { asStrataRuns } from '../strata-env.js';

interface Args {
  size: number;
  rounds: number;
  qd: number;
  randOps: number;
}

function args(): Args {
  const a = process.argv.slice(2);
  const get = (k: string, d: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1]! : d;
  };
  return { size: parseSize(get('--size', '512M')), rounds: Number(get('--rounds', '3')), qd: Number(get('--qd', '16')), randOps: Number(get('--rand-ops', '20000')) };
}

type Dataset = 'random' | 'halfzero';

function makeData(kind: Dataset, n: number): Buffer {
  const b = randomBytes(n);
  if (kind === 'halfzero') for (let o = 0; o < n; o += 128 * 1024) b.fill(0, o, Math.min(n, o + 64 * 1024));
  return b;
}

async function runQueue(ops: number, qd: number, op: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < ops) await op(next++);
  };
  await Promise.all(Array.from({ length: qd }, worker));
}

interface Result {
  job: string;
  data: Dataset;
  target: 'strata' | 'raw';
  seconds: number;
  bytes: number;
  ops: number;
}

async function jobs(dev: BlockDevice, a: Args, data: Dataset, target: 'strata' | 'raw'): Promise<Result[]> {
  const out: Result[] = [];
  const MB = 1024 * 1024;
  const seqBuf = makeData(data, 64 * MB);
  const nSeq = Math.floor(a.size / MB);
  let t = performance.now();
  await runQueue(nSeq, a.qd, (i) => dev.write(i * MB, seqBuf.subarray((i % 64) * MB, (i % 64) * MB + MB)));
  await dev.flush();
  out.push({ job: 'seq-write-1M', data, target, seconds: (performance.now() - t) / 1000, bytes: nSeq * MB, ops: nSeq });
  t = performance.now();
  await runQueue(nSeq, a.qd, async (i) => void (await dev.read(i * MB, MB)));
  out.push({ job: 'seq-read-1M', data, target, seconds: (performance.now() - t) / 1000, bytes: nSeq * MB, ops: nSeq });
  const blocks = Math.floor(a.size / 4096);
  const offs = Array.from({ length: a.randOps }, () => Math.floor(Math.random() * blocks) * 4096);
  t = performance.now();
  await runQueue(a.randOps, a.qd * 2, (i) => dev.write(offs[i]!, seqBuf.subarray((i % 16384) * 4096, (i % 16384) * 4096 + 4096)));
  await dev.flush();
  out.push({ job: 'rand-write-4K', data, target, seconds: (performance.now() - t) / 1000, bytes: a.randOps * 4096, ops: a.randOps });
  // Warm the cache over a working set, then measure reads within it.
  const ws = offs.slice(0, Math.min(offs.length, 8192));
  await runQueue(ws.length, a.qd * 2, async (i) => void (await dev.read(ws[i]!, 4096)));
  t = performance.now();
  await runQueue(a.randOps, a.qd * 2, async (i) => void (await dev.read(ws[i % ws.length]!, 4096)));
  out.push({ job: 'rand-read-4K-cached', data, target, seconds: (performance.now() - t) / 1000, bytes: a.randOps * 4096, ops: a.randOps });
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  await asStrataRuns();
  const a = args();
  const dir = mkdtempSync(join(process.env['BENCH_DIR'] ?? tmpdir(), 'strata-bench-'));
  const all: Result[] = [];
  try {
    for (let round = 0; round < a.rounds; round++) {
      for (const data of ['random', 'halfzero'] as Dataset[]) {
        const order: ('strata' | 'raw')[] = round % 2 === 0 ? ['strata', 'raw'] : ['raw', 'strata'];
        for (const target of order) {
          if (target === 'raw') {
            const path = join(dir, `raw-${round}-${data}.img`);
            const dev = await RawDevice.create(path, a.size, { overwrite: true });
            all.push(...(await jobs(dev, a, data, 'raw')));
            await dev.close();
            rmSync(path);
          } else {
            const home = join(dir, `home-${round}-${data}`);
            const mgr = new PoolManager(home);
            await mgr.poolCreate('bench', { groups: [{ type: 'single', paths: [join(dir, `pool-${round}-${data}.img`)] }], createSize: a.size * 3 + 256 * 1024 * 1024 });
            await mgr.create('bench/vol', { volsize: String(a.size), sparse: true });
            const { volume } = await mgr.openVolume('bench/vol');
            all.push(...(await jobs(volume, a, data, 'strata')));
            await mgr.close();
            rmSync(home, { recursive: true, force: true });
            rmSync(join(dir, `pool-${round}-${data}.img`), { force: true });
          }
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows: Record<string, unknown>[] = [];
  const keys = [...new Set(all.map((r) => `${r.job}|${r.data}`))];
  console.log(`pool-throughput: size ${a.size / 1048576} MiB, ${a.rounds} rounds, qd ${a.qd}; medians`);
  console.log('job                    data      strata MB/s  raw MB/s   strata IOPS  raw IOPS   ratio');
  for (const k of keys) {
    const [job, data] = k.split('|') as [string, Dataset];
    const pick = (t: 'strata' | 'raw') => all.filter((r) => r.job === job && r.data === data && r.target === t);
    const mbs = (rs: Result[]) => median(rs.map((r) => r.bytes / r.seconds / 1e6));
    const iops = (rs: Result[]) => median(rs.map((r) => r.ops / r.seconds));
    const s = mbs(pick('strata'));
    const r = mbs(pick('raw'));
    const row = { job, data, strataMBps: +s.toFixed(1), rawMBps: +r.toFixed(1), strataIops: Math.round(iops(pick('strata'))), rawIops: Math.round(iops(pick('raw'))), ratio: +(s / r).toFixed(2) };
    rows.push(row);
    console.log(
      `${job.padEnd(22)} ${data.padEnd(9)} ${String(row.strataMBps).padStart(11)} ${String(row.rawMBps).padStart(9)} ${String(row.strataIops).padStart(12)} ${String(row.rawIops).padStart(9)} ${row.ratio.toFixed(2).padStart(7)}`,
    );
  }
  mkdirSync(join(process.cwd(), 'bench/results'), { recursive: true });
  writeFileSync(join(process.cwd(), 'bench/results/pool-throughput.json'), JSON.stringify({ date: new Date().toISOString(), args: a, results: rows, raw: all }, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
