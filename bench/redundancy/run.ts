/**
 * bench/redundancy: sequential write and read throughput of a pool volume on
 * mirror-2, raidz1 (5 devices) and raidz2 (6 devices) against a single
 * device, in one run (layouts alternate within each round; medians over
 * rounds); degraded read throughput (one device offline); scrub rate.
 *
 *   node dist/bench/redundancy/run.js [--size 128M] [--rounds 2] [--dir /tmp]
 *
 * Reads run with the ARC emptied first (device reads, not cache hits).
 * Prints MB/s and ratios to the single device; writes
 * bench/results/redundancy.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolManager } from '../../src/daemon/services.js';
import { parseSize } from '../../src/pool/dataset/units.js';
import type { VdevGroupSpec } from '../../src/pool/txg/open.js';
import { median } from '../stats.js';

const MiB = 1024 * 1024;
const a = process.argv.slice(2);
const opt = (k: string, d: string) => (a.includes(k) ? a[a.indexOf(k) + 1]! : d);
const SIZE = parseSize(opt('--size', '128M'));
const ROUNDS = Number(opt('--rounds', '2'));
const BASE = opt('--dir', tmpdir());
const IO = MiB;

interface Layout {
  name: string;
  n: number;
  group: (paths: string[]) => VdevGroupSpec;
}
const LAYOUTS: Layout[] = [
  { name: 'single', n: 1, group: (p) => ({ type: 'single', paths: p }) },
  { name: 'mirror-2', n: 2, group: (p) => ({ type: 'mirror', paths: p }) },
  { name: 'raidz1-5', n: 5, group: (p) => ({ type: 'raidz', nparity: 1, paths: p }) },
  { name: 'raidz2-6', n: 6, group: (p) => ({ type: 'raidz', nparity: 2, paths: p }) },
];

interface Sample {
  write: number;
  read: number;
  degradedRead: number | null;
  scrub: number;
  /** Read throughput while scrubs run back to back, over the idle read throughput. */
  readDuringScrub: number;
}

const mbps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
async function one(layout: Layout): Promise<Sample> {
  const dir = mkdtempSync(join(BASE, 'strata-bench-redund-'));
  const mgr = new PoolManager(join(dir, 'home'), { arcMaxBytes: 32 * MiB });
  try {
    // Each device big enough for the volume plus slack in any layout.
    const devSize = Math.max(256 * MiB, Math.ceil((SIZE * 2.5) / Math.max(1, layout.n - 2) / MiB) * MiB);
    const paths = Array.from({ length: layout.n }, (_, i) => {
      const p = join(dir, `d${i}`);
      writeFileSync(p, '');
      truncateSync(p, devSize);
      return p;
    });
    await mgr.poolCreate('tank', { groups: [layout.group(paths)] });
    await mgr.create('tank/vol', { volsize: String(SIZE), blocksize: '131072', sparse: true, props: { compression: 'off' } });
    const pool = await mgr.pool('tank');
    const { volume, release } = await mgr.openVolume('tank/vol');
    const buf = randomBytes(IO);
    let t = performance.now();
    for (let off = 0; off < SIZE; off += IO) await volume.write(off, buf);
    await volume.flush();
    await pool.txg.syncNow();
    const write = mbps(SIZE, performance.now() - t);
    const readAll = async () => {
      pool.arc.clear();
      const t0 = performance.now();
      const q: Promise<unknown>[] = [];
      for (let off = 0; off < SIZE; off += IO) {
        q.push(volume.read(off, IO));
        if (q.length >= 4) await q.shift();
      }
      await Promise.all(q);
      return mbps(SIZE, performance.now() - t0);
    };
    const read = await readAll();
    t = performance.now();
    await mgr.poolScrub('tank', { wait: true });
    const st = (await mgr.poolStatus('tank'))[0]!;
    const scrub = mbps(st.scan!.examined, Math.max(1, st.scan!.activeMs || performance.now() - t));
    // Foreground reads while scrubs run back to back (the scrub backs off for foreground I/O),
    // against an idle read with the same (warm) OS page cache.
    const warm = await readAll();
    let reading = true;
    const scrubbing = (async () => {
      while (reading) await mgr.poolScrub('tank', { wait: true });
    })();
    const busyRead = await readAll();
    reading = false;
    await scrubbing;
    const readDuringScrub = busyRead / warm;
    let degradedRead: number | null = null;
    if (layout.n > 1) {
      await mgr.poolOffline('tank', paths[0]!);
      degradedRead = await readAll();
    }
    release();
    return { write, read, degradedRead, scrub, readDuringScrub };
  } finally {
    await mgr.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const samples = new Map<string, Sample[]>();
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate the order each round so no layout always runs on a warm or cold machine.
    const order = r % 2 ? [...LAYOUTS].reverse() : LAYOUTS;
    for (const l of order) {
      const s = await one(l);
      (samples.get(l.name) ?? samples.set(l.name, []).get(l.name)!).push(s);
      process.stderr.write(`round ${r + 1} ${l.name}: write ${s.write.toFixed(0)} read ${s.read.toFixed(0)} degraded ${s.degradedRead?.toFixed(0) ?? '-'} scrub ${s.scrub.toFixed(0)} MB/s, reads during scrub ${(s.readDuringScrub * 100).toFixed(0)}%\n`);
    }
  }
  const res = LAYOUTS.map((l) => {
    const xs = samples.get(l.name)!;
    const d = xs.map((x) => x.degradedRead).filter((x): x is number => x !== null);
    return { layout: l.name, devices: l.n, writeMBps: median(xs.map((x) => x.write)), readMBps: median(xs.map((x) => x.read)), degradedReadMBps: d.length ? median(d) : null, scrubMBps: median(xs.map((x) => x.scrub)), readDuringScrubVsIdle: median(xs.map((x) => x.readDuringScrub)) };
  });
  const single = res[0]!;
  const rows = res.map((r) => ({
    ...r,
    writeVsSingle: r.writeMBps / single.writeMBps,
    readVsSingle: r.readMBps / single.readMBps,
    degradedVsHealthy: r.degradedReadMBps === null ? null : r.degradedReadMBps / r.readMBps,
  }));
  const f = (x: number | null, d = 0) => (x === null ? '-' : x.toFixed(d));
  process.stdout.write(`volume ${SIZE / MiB} MiB, 128K blocks, compression off, ${ROUNDS} rounds (medians), devices in ${BASE}\n\n`);
  process.stdout.write('layout      write MB/s  read MB/s  degraded read  scrub MB/s  write/single  read/single  degraded/healthy\n');
  for (const r of rows) {
    process.stdout.write(
      `${r.layout.padEnd(10)}  ${f(r.writeMBps).padStart(10)}  ${f(r.readMBps).padStart(9)}  ${f(r.degradedReadMBps).padStart(13)}  ${f(r.scrubMBps).padStart(10)}  ${f(r.writeVsSingle, 2).padStart(12)}  ${f(r.readVsSingle, 2).padStart(11)}  ${f(r.degradedVsHealthy, 2).padStart(16)}\n`,
    );
  }
  process.stdout.write(`\nforeground reads while scrubbing, vs idle: ${rows.map((r) => `${r.layout} ${f(r.readDuringScrubVsIdle * 100)}%`).join(', ')}\n`);
  const out = process.env['STRATA_BENCH_RESULTS'] ?? join(dirname(fileURLToPath(import.meta.url)), '../../../bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'redundancy.json'), JSON.stringify({ date: new Date().toISOString(), size: SIZE, rounds: ROUNDS, dir: BASE, results: rows }, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
