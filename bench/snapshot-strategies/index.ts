/**
 * bench/snapshot-strategies: strata's three snapshot strategies (snapmode
 * native, cow, row) against qcow2 internal snapshots and external overlays
 * served by strata and by qemu-nbd, in one run. Every number comes from fio
 * (ioengine=nbd) against a server process, or from the pool's own device
 * accounting (`amplification`, src/pool/io/account.ts) read through the
 * daemon's API. Targets alternate within each round (the order rotates);
 * tables report medians.
 *
 * Phases, on one disk of --size per target (filled with incompressible data):
 *  1. sequential read 1M QD16, fresh (reference for 4);
 *  2. 4 KiB random overwrites QD32, a fixed amount (size/8), before and
 *     after a snapshot (first overwrites); snapshot create/delete time at
 *     this size; pool targets: device I/O per guest byte of those writes;
 *  3. pool targets: amplification of whole-block (volblocksize) random
 *     overwrites (size/8), without a snapshot and as first overwrites after one,
 *     with a cold ARC (the daemon restarted before each pass) when the
 *     daemon is ours, else warm;
 *  4. fragmentation: a snapshot, 50% of the disk overwritten in random
 *     64 KiB writes, then sequential read 1M QD16; space used;
 *  5. read IOPS (4 KiB random QD32) with 1, 10, 50 snapshots in the chain,
 *     each layer holding size/256 of random 4 KiB writes, the head empty;
 *  6. snapshot create and delete time against volume size (--sizes): fill,
 *     snapshot, overwrite 1/16 in random 64 KiB writes, delete.
 *
 * Entry points: `node dist/bench/snapshot-strategies/run.js` and
 * `strata bench snapshots` (src/cli/bench.ts); both call runSnapshotBench.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolManager } from '../../src/daemon/services.js';
import { checkpoint, interruptible } from '../children.js';
import type { IoAccountJson } from '../../src/pool/io/account.js';
import { fio, have, run } from './proc.js';
import { ImageServer, PoolService } from './servers.js';
import { PoolTarget, Qcow2Target, type Space, type Target } from './targets.js';
import type { SnapshotBenchOptions } from '../../src/cli/bench-options.js';

export type { SnapshotBenchOptions };

export const MiB = 1024 * 1024;

export interface Stat {
  median: number;
  samples: number[];
}

export interface AmpSample {
  amplification: number;
  guestWriteBytes: number;
  deviceWriteBytes: number;
  deviceReadBytesForWrites: number;
}

export interface SnapshotBenchResult {
  version: 1;
  date: string;
  durationSec: number;
  host: { node: string; cpus: number; loadavgStart: number[]; loadavgEnd: number[]; fio: string | null; qemuImg: string | null; qemuNbd: string | null };
  options: { size: number; rounds: number; runtimeMs: number; sizes: number[]; depths: number[]; dir: string; pool: string | null; mode: 'temporary pool' | 'existing pool' };
  /** True when phase 3 ran with a cold ARC (the daemon was ours to restart). */
  coldCache: boolean;
  targets: { name: string; family: string; server: string }[];
  seqReadFresh: Record<string, Stat>;
  overwrite: Record<string, { iopsBefore: Stat; iopsAfter: Stat; createMs: Stat; deleteMs: Stat; ampBefore?: Stat; ampAfter?: Stat }>;
  amplification: Record<string, { volblocksize: number; noSnapshot: Stat; firstOverwrite: Stat; last?: { noSnapshot: AmpSample; firstOverwrite: AmpSample } }>;
  fragmentation: Record<string, { seqRead: Stat; deleteMs: number }>;
  depth: Record<string, Record<string, { readIops: Stat; createMs: Stat }>>;
  sizes: Record<string, Record<string, { createMs: Stat; deleteMs: Stat }>>;
  space: Record<string, Record<string, Space>>;
  /** Temporary pool only: pool allocation vs the sum of the volumes' `used`, at each space point. */
  poolCheck: Record<string, { poolAlloc: number; sumUsed: number }>;
  /** Wall time of each phase, seconds. */
  phaseSec: Record<string, number>;
  anomalies: string[];
  notes: string[];
  errors: string[];
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const stat = (samples: number[]): Stat => ({ median: median(samples), samples });

export function sizeLabel(n: number): string {
  if (n >= 1024 * MiB && n % (1024 * MiB) === 0) return `${n / (1024 * MiB)}G`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB}M`;
  return `${Math.round(n / 1024)}K`;
}

/** Targets in round-robin order, rotated by `round` so none always goes first. */
function rotated<T>(xs: T[], round: number): T[] {
  return xs.map((_, k) => xs[(k + round) % xs.length]!);
}

/** Write `size` bytes of incompressible data to `file` (the source of the qcow2 images). */
async function randomFile(file: string, size: number): Promise<void> {
  const fh = await open(file, 'w');
  const chunk = randomBytes(4 * MiB);
  try {
    for (let off = 0, i = 0; off < size; off += chunk.length, i++) {
      chunk.writeUInt32LE(i, 0); // no two chunks alike
      await fh.write(chunk, 0, Math.min(chunk.length, size - off), off);
    }
  } finally {
    await fh.close();
  }
}

export async function runSnapshotBench(o: SnapshotBenchOptions): Promise<SnapshotBenchResult> {
  const started = Date.now();
  const log = (line: string) => {
    const t = Math.floor((Date.now() - started) / 1000);
    o.log(`[${String(Math.floor(t / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}] ${line}`);
  };
  const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const tools = { fio: await have('fio'), qemuImg: await have('qemu-img'), qemuNbd: await have('qemu-nbd'), qemuIo: await have('qemu-io') };
  if (!tools.fio) throw new Error('fio is needed (Debian: apt-get install fio); it drives every NBD measurement');
  const r: SnapshotBenchResult = {
    version: 1,
    date: new Date().toISOString(),
    durationSec: 0,
    host: { node: process.version, cpus: cpus().length, loadavgStart: loadavg(), loadavgEnd: [], fio: tools.fio, qemuImg: tools.qemuImg, qemuNbd: tools.qemuNbd },
    options: { size: o.size, rounds: o.rounds, runtimeMs: o.runtimeMs, sizes: o.sizes, depths: o.depths, dir: o.dir, pool: o.pool ?? null, mode: o.pool ? 'existing pool' : 'temporary pool' },
    coldCache: false,
    targets: [],
    seqReadFresh: {},
    overwrite: {},
    amplification: {},
    fragmentation: {},
    depth: {},
    sizes: {},
    space: {},
    poolCheck: {},
    phaseSec: {},
    anomalies: [],
    notes: [],
    errors: [],
  };
  const qemuOk = !!(tools.qemuImg && tools.qemuNbd && tools.qemuIo);
  if (!qemuOk) r.notes.push('qemu-img/qemu-nbd/qemu-io not found: the qcow2 targets were skipped (Debian: apt-get install qemu-utils)');
  const want = (name: string) => !o.only?.length || o.only.some((x) => name === x || name.startsWith(`${x}/`));

  await mkdir(o.dir, { recursive: true });
  const work = await mkdtemp(join(resolve(o.dir), 'strata-bench-snapstrat-'));
  let svc: PoolService | null = null;
  const servers: ImageServer[] = [];
  const live = new Set<Target>();
  let prefix = '';
  let poolName = '';
  let cleaned: Promise<void> | null = null;
  const cleanup = () =>
    (cleaned ??= (async () => {
      for (const t of live) await t.destroy().catch(() => {});
      for (const s of servers) await s.stop().catch(() => {});
      if (svc && o.pool && prefix.includes('/strata-bench-')) {
        await svc.api?.destroy(prefix, { recursive: true, force: true }).catch((e: Error) => log(`cleanup: could not destroy ${prefix} (${e.message}); run: strata destroy -r -f ${prefix}`));
      }
      await svc?.stop().catch(() => {});
      await rm(work, { recursive: true, force: true });
    })());
  // Interrupted (Ctrl-C, SIGTERM, SIGHUP, a closed stdout or stderr: bench/children.ts): fio stops,
  // then this cleanup (an existing pool's volumes are destroyed through the daemon before it stops),
  // then whatever still runs; the exit status is the signal's.
  await interruptible({ what: work, cleanup, streams: [process.stdout, process.stderr] }, async () => {
    try {
      // ------------------------------------------------------------ the pool and its daemon
      const biggest = Math.max(o.size, ...o.sizes);
      if (o.pool) {
        poolName = o.pool;
        prefix = `${o.pool}/strata-bench-${process.pid}`;
        svc = new PoolService({ cli, home: o.home ?? process.env['STRATA_HOME'] ?? './strata-data', nbd: o.nbd, log });
        await svc.start();
        await svc.api.poolList([o.pool]);
        await svc.api.create(prefix, {});
        log(`using pool '${o.pool}' (${svc.own ? 'daemon started by the benchmark' : 'the running daemon'}); volumes under ${prefix}`);
      } else {
        poolName = 'sbench';
        prefix = poolName;
        const home = join(work, 'home');
        const mgr = new PoolManager(home);
        // Sparse: only what the volumes write takes space.
        await mgr.poolCreate(poolName, { groups: [{ type: 'single', paths: [join(work, 'pool.dev')] }], createSize: Math.max(4096 * MiB, 10 * o.size + 5 * biggest) });
        await mgr.close();
        svc = new PoolService({ cli, home, log });
        await svc.start();
        log(`temporary pool '${poolName}' on ${work}`);
      }
      const pool = svc;
      r.coldCache = pool.own;
      let phaseT = Date.now();
      const phaseDone = (name: string) => {
        r.phaseSec[name] = (Date.now() - phaseT) / 1000;
        phaseT = Date.now();
      };

      const guard = async (t: Target, what: string, fn: () => Promise<void>) => {
        // Interrupted: the run goes no further (it would start servers and fio for the next
        // target while the cleanup stops them), and a measurement the interruption broke is no error.
        await checkpoint();
        if (!live.has(t)) return;
        try {
          await fn();
        } catch (e) {
          await checkpoint();
          const msg = `${t.name}: ${what} failed: ${(e as Error).message}`;
          r.errors.push(msg);
          log(`ERROR ${msg}`);
          live.delete(t);
        }
      };
      const alive = (ts: Target[]) => ts.filter((t) => live.has(t));
      const amp = async (t: PoolTarget, reset: boolean): Promise<AmpSample & IoAccountJson> => {
        const [a] = await pool.api.amplification([t.vol], { reset });
        return a!;
      };
      const spacePoint = async (point: string, ts: Target[]) => {
        r.space[point] = {};
        const p0 = alive(ts).find((t): t is PoolTarget => t instanceof PoolTarget);
        if (p0) await pool.sync(p0.vol);
        for (const t of alive(ts)) await guard(t, `space ${point}`, async () => void (r.space[point]![t.name] = await t.space()));
        if (!o.pool) {
          const [p] = await pool.api.poolList([poolName]);
          const sumUsed = Object.entries(r.space[point]!).filter(([n]) => ts.find((t) => t.name === n)?.family === 'pool').reduce((s, [, v]) => s + v.used, 0);
          r.poolCheck[point] = { poolAlloc: p?.alloc ?? NaN, sumUsed };
        }
      };

      // ------------------------------------------------------------ targets
      const S = o.size;
      const main: Target[] = [];
      for (const mode of ['native', 'cow', 'row'] as const) {
        if (want(mode)) main.push(new PoolTarget(mode, pool, `${prefix}/${mode}`, mode, S));
      }
      if (qemuOk) {
        for (const fam of ['qcow2-int', 'qcow2-ext'] as const) {
          for (const kind of ['strata', 'qemu-nbd'] as const) {
            const name = `${fam}/${kind}`;
            if (!want(name)) continue;
            const srv = new ImageServer(kind, { cli, home: join(work, `imghome-${fam}-${kind}`), log });
            servers.push(srv);
            main.push(new Qcow2Target(name, fam, srv, join(work, `${fam}-${kind}.qcow2`), S));
          }
        }
      }
      r.targets = main.map((t) => ({ name: t.name, family: t.family, server: t.server }));
      log(`targets: ${main.map((t) => t.name).join(', ')}; ${sizeLabel(S)} each, ${o.rounds} rounds`);

      // ------------------------------------------------------------ fill
      const template = join(work, 'template.qcow2');
      if (main.some((t) => t instanceof Qcow2Target)) {
        const raw = join(work, 'template.raw');
        await randomFile(raw, S);
        await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, template]);
        await rm(raw, { force: true });
      }
      for (const t of main) {
        live.add(t);
        await guard(t, 'create and fill', async () => {
          if (t instanceof PoolTarget) await t.create();
          else await (t as Qcow2Target).create(template);
        });
      }
      await rm(template, { force: true });
      await spacePoint('filled', main);
      const pools = () => alive(main).filter((t): t is PoolTarget => t instanceof PoolTarget);

      phaseDone('setup and fill');
      // ------------------------------------------------------------ 1. sequential read, fresh
      const seqRead = async (into: Record<string, number[]>, round: number) => {
        for (const t of rotated(alive(main), round)) {
          await guard(t, 'sequential read', async () => {
            const x = await fio(await t.uri(), { rw: 'read', bs: MiB, iodepth: 16, size: S, runtimeMs: o.runtimeMs, rampMs: Math.min(500, o.runtimeMs / 4) });
            (into[t.name] ??= []).push(x.mbps);
          });
        }
      };
      const fresh: Record<string, number[]> = {};
      for (let round = 0; round < o.rounds; round++) {
        await seqRead(fresh, round);
        log(`seq read fresh, round ${round + 1}: ${Object.entries(fresh).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)} MB/s`).join(', ')}`);
      }
      for (const [k, v] of Object.entries(fresh)) r.seqReadFresh[k] = stat(v);

      phaseDone('1 sequential read');
      // ------------------------------------------------------------ 2. 4K overwrites before/after a snapshot
      const ow: Record<string, { before: number[]; after: number[]; create: number[]; del: number[]; ampB: number[]; ampA: number[] }> = {};
      const owJob = { rw: 'randwrite' as const, bs: 4096, iodepth: 32, size: S, ioSize: Math.max(S / 8, 64 * 4096), seed: 4242 };
      for (let round = 0; round < o.rounds; round++) {
        for (const t of rotated(alive(main), round)) {
          await guard(t, '4K overwrites', async () => {
            const m = (ow[t.name] ??= { before: [], after: [], create: [], del: [], ampB: [], ampA: [] });
            const isPool = t instanceof PoolTarget;
            if (isPool) await amp(t, true);
            m.before.push((await fio(await t.uri(), owJob)).iops);
            if (isPool) {
              await pool.sync(t.vol);
              m.ampB.push((await amp(t, true)).amplification);
            }
            m.create.push(await t.snapshot(`ow${round}`));
            m.after.push((await fio(await t.uri(), owJob)).iops);
            if (isPool) {
              await pool.sync(t.vol);
              m.ampA.push((await amp(t, true)).amplification);
            }
            m.del.push(await t.deleteSnapshot(`ow${round}`));
            log(`4K overwrite r${round + 1} ${t.name.padEnd(18)} before ${m.before.at(-1)!.toFixed(0).padStart(6)} IOPS, after snapshot ${m.after.at(-1)!.toFixed(0).padStart(6)} IOPS; create ${m.create.at(-1)!.toFixed(0)} ms, delete ${m.del.at(-1)!.toFixed(0)} ms${isPool ? `; amplification ${m.ampB.at(-1)}x -> ${m.ampA.at(-1)}x` : ''}`);
          });
        }
      }
      for (const [k, m] of Object.entries(ow)) {
        r.overwrite[k] = { iopsBefore: stat(m.before), iopsAfter: stat(m.after), createMs: stat(m.create), deleteMs: stat(m.del) };
        if (m.ampB.length) Object.assign(r.overwrite[k]!, { ampBefore: stat(m.ampB), ampAfter: stat(m.ampA) });
      }

      phaseDone('2 overwrites around a snapshot');
      // ------------------------------------------------------------ 3. amplification of whole-block overwrites
      if (pools().length) {
        const acc: Record<string, { no: number[]; first: number[]; last: { noSnapshot?: AmpSample; firstOverwrite?: AmpSample } }> = {};
        const pass = async (round: number, key: 'no' | 'first') => {
          if (pool.own) await pool.restart();
          for (const t of rotated(pools(), round)) {
            await guard(t, 'amplification', async () => {
              await amp(t, true);
              await fio(await t.uri(), { rw: 'randwrite', bs: t.volblocksize, iodepth: 16, size: S, ioSize: Math.max(S / 8, 16 * t.volblocksize), seed: 777 });
              await pool.sync(t.vol);
              const a = await amp(t, true);
              const m = (acc[t.name] ??= { no: [], first: [], last: {} });
              m[key].push(a.amplification);
              m.last[key === 'no' ? 'noSnapshot' : 'firstOverwrite'] = { amplification: a.amplification, guestWriteBytes: a.guestWriteBytes, deviceWriteBytes: a.deviceWriteBytes, deviceReadBytesForWrites: a.deviceReadBytesForWrites };
            });
          }
        };
        for (let round = 0; round < o.rounds; round++) {
          await pass(round, 'no');
          for (const t of pools()) await guard(t, 'snapshot (amplification)', async () => void (await t.snapshot(`amp${round}`)));
          await pass(round, 'first');
          for (const t of pools()) await guard(t, 'delete (amplification)', async () => void (await t.deleteSnapshot(`amp${round}`)));
          log(`amplification (${pool.own ? 'cold' : 'warm'} ARC) r${round + 1}: ${Object.entries(acc).map(([k, v]) => `${k} ${v.no.at(-1)}x / first overwrite ${v.first.at(-1)}x`).join(', ')}`);
        }
        for (const t of pools()) {
          const m = acc[t.name];
          if (m) r.amplification[t.name] = { volblocksize: t.volblocksize, noSnapshot: stat(m.no), firstOverwrite: stat(m.first), last: m.last as { noSnapshot: AmpSample; firstOverwrite: AmpSample } };
        }
        if (!pool.own) r.notes.push('amplification measured with a warm ARC: the running daemon is not ours to restart, so cow copy-outs may be served from the cache (expect ~2x instead of ~3x)');
      }

      phaseDone('3 amplification');
      // ------------------------------------------------------------ 4. fragmentation
      const frag: Record<string, number[]> = {};
      for (const t of alive(main)) {
        await guard(t, 'fragmenting overwrites', async () => {
          await t.snapshot('frag');
          await fio(await t.uri(), { rw: 'randwrite', bs: 65536, iodepth: 16, size: S, ioSize: S / 2, seed: 5050 });
        });
      }
      await spacePoint('snapshot + 50% overwritten', main);
      for (let round = 0; round < o.rounds; round++) {
        await seqRead(frag, round);
        log(`seq read after 50% overwrite, round ${round + 1}: ${Object.entries(frag).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)} MB/s`).join(', ')}`);
      }
      for (const t of alive(main)) {
        await guard(t, 'delete (fragmentation)', async () => {
          const ms = await t.deleteSnapshot('frag');
          r.fragmentation[t.name] = { seqRead: stat(frag[t.name] ?? []), deleteMs: ms };
        });
      }

      phaseDone('4 fragmentation');
      // ------------------------------------------------------------ 5. reads through 1, 10, 50 snapshots
      const depthTargets = alive(main).filter((t) => t.family !== 'qcow2-int');
      const depths = [...new Set(o.depths)].sort((a, b) => a - b);
      const layerBytes = Math.max(S / 256, 16 * 4096);
      for (const d of depths) {
        const creates: Record<string, number[]> = {};
        const built: string[] = [];
        for (const t of alive(depthTargets)) {
          await guard(t, `building ${d} snapshots`, async () => {
            const t0 = Date.now();
            while (t.depth < d) {
              const i = t.depth;
              await t.layerWrites(1000 + i, layerBytes);
              (creates[t.name] ??= []).push(await t.snapshot(`d${i}`));
            }
            built.push(`${t.name} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          });
        }
        log(`built ${d} snapshot(s): ${built.join(', ')}`);
        const reads: Record<string, number[]> = {};
        for (let round = 0; round < o.rounds; round++) {
          for (const t of rotated(alive(depthTargets), round)) {
            await guard(t, `reads at depth ${d}`, async () => {
              const x = await fio(await t.uri(), { rw: 'randread', bs: 4096, iodepth: 32, size: S, runtimeMs: o.runtimeMs, rampMs: Math.min(500, o.runtimeMs / 4) });
              (reads[t.name] ??= []).push(x.iops);
            });
          }
        }
        for (const t of alive(depthTargets)) (r.depth[t.name] ??= {})[String(d)] = { readIops: stat(reads[t.name] ?? []), createMs: stat(creates[t.name] ?? []) };
        log(`random 4K read, ${d} snapshot(s): ${alive(depthTargets).map((t) => `${t.name} ${r.depth[t.name]![String(d)]!.readIops.median.toFixed(0)} IOPS`).join(', ')}`);
      }
      if (depths.length) await spacePoint(`${depths.at(-1)} snapshots`, depthTargets);

      for (const t of main) {
        if (live.has(t)) await guard(t, 'destroy', async () => t.destroy());
        live.delete(t);
      }

      phaseDone('5 chain depth');
      // ------------------------------------------------------------ 6. create/delete time vs size
      for (const size of [...o.sizes].sort((a, b) => a - b)) {
        const L = sizeLabel(size);
        const ts: Target[] = [];
        for (const mode of ['native', 'cow', 'row'] as const) if (want(mode)) ts.push(new PoolTarget(mode, pool, `${prefix}/${mode}-${L}`, mode, size));
        let tmpl = '';
        if (qemuOk) {
          for (const fam of ['qcow2-int', 'qcow2-ext'] as const) {
            if (!want(fam) && !want(`${fam}/qemu-nbd`)) continue;
            const srv = new ImageServer('qemu-nbd', { cli, home: '', log });
            servers.push(srv);
            ts.push(new Qcow2Target(fam, fam, srv, join(work, `${fam}-${L}.qcow2`), size));
          }
          if (ts.some((t) => t instanceof Qcow2Target)) {
            tmpl = join(work, `template-${L}.qcow2`);
            const raw = join(work, `template-${L}.raw`);
            await randomFile(raw, size);
            await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, tmpl]);
            await rm(raw, { force: true });
          }
        }
        for (const t of ts) {
          live.add(t);
          await guard(t, `create ${L}`, async () => {
            if (t instanceof PoolTarget) await t.create();
            else await (t as Qcow2Target).create(tmpl);
          });
        }
        if (tmpl) await rm(tmpl, { force: true });
        const acc: Record<string, { c: number[]; d: number[] }> = {};
        for (let round = 0; round < o.rounds; round++) {
          for (const t of rotated(alive(ts), round)) {
            await guard(t, `snapshot at ${L}`, async () => {
              const m = (acc[t.name] ??= { c: [], d: [] });
              m.c.push(await t.snapshot(`sz${round}`));
              await fio(await t.uri(), { rw: 'randwrite', bs: 65536, iodepth: 16, size, ioSize: Math.max(size / 16, 65536), seed: 31 + round });
              m.d.push(await t.deleteSnapshot(`sz${round}`));
            });
          }
        }
        for (const t of ts) if (acc[t.name]) (r.sizes[t.name] ??= {})[L] = { createMs: stat(acc[t.name]!.c), deleteMs: stat(acc[t.name]!.d) };
        log(`snapshot at ${L}: ${Object.entries(acc).map(([k, v]) => `${k} create ${median(v.c).toFixed(1)} ms, delete ${median(v.d).toFixed(0)} ms`).join('; ')}`);
        for (const t of ts) {
          if (live.has(t)) await guard(t, 'destroy', async () => t.destroy());
          live.delete(t);
        }
      }
      phaseDone('6 create/delete vs size');
    } finally {
      await cleanup();
    }
  });
  r.host.loadavgEnd = loadavg();
  r.durationSec = (Date.now() - started) / 1000;
  findAnomalies(r);
  return r;
}

/** What a reader should not miss: strategy expectations that did not hold. */
export function findAnomalies(r: SnapshotBenchResult): void {
  const a = r.anomalies;
  const cow = r.amplification['cow'];
  if (cow && r.coldCache && !(cow.firstOverwrite.median >= 2.5 && cow.firstOverwrite.median <= 3.5)) {
    a.push(`cow first-overwrite amplification is ${cow.firstOverwrite.median.toFixed(2)}x (expected ~3x: one read and two writes per block)`);
  }
  for (const m of ['native', 'row']) {
    const x = r.amplification[m];
    if (x && !(x.firstOverwrite.median <= 1.5)) a.push(`${m} first-overwrite amplification is ${x.firstOverwrite.median.toFixed(2)}x (expected ~1x)`);
  }
  for (const [m, x] of Object.entries(r.amplification)) {
    if (!(x.noSnapshot.median <= 1.5)) a.push(`${m} amplification of whole-block overwrites without a snapshot is ${x.noSnapshot.median.toFixed(2)}x (expected ~1x)`);
  }
  const ds = r.options.depths.length ? [Math.min(...r.options.depths), Math.max(...r.options.depths)] : [];
  for (const [name, byDepth] of Object.entries(r.depth)) {
    if (ds.length < 2 || ds[0] === ds[1]) break;
    const lo = byDepth[String(ds[0])]?.readIops.median;
    const hi = byDepth[String(ds[1])]?.readIops.median;
    // qemu-nbd is the reference; every strata-served disk (row's index, formats/qcow2's merged chain index) should stay flat.
    if (lo && hi && lo / hi > 1.5 && !name.endsWith('/qemu-nbd')) {
      const ref = r.depth[name.replace(/\/strata$/, '/qemu-nbd')];
      const refLo = ref?.[String(ds[0])]?.readIops.median;
      const refHi = ref?.[String(ds[1])]?.readIops.median;
      // native and cow read their head whatever the depth: their ratio shows how much is the machine's load.
      const ctl = r.depth['native'];
      const ctlLo = ctl?.[String(ds[0])]?.readIops.median;
      const ctlHi = ctl?.[String(ds[1])]?.readIops.median;
      let cmp = name.endsWith('/strata') && refLo && refHi ? `; qemu-nbd on the same chain: ${(refLo / refHi).toFixed(2)}x` : '';
      if (name !== 'native' && ctlLo && ctlHi) cmp += `; native (depth-independent control): ${(ctlLo / ctlHi).toFixed(2)}x`;
      a.push(`${name}: random reads with ${ds[1]} snapshots are ${(lo / hi).toFixed(2)}x slower than with ${ds[0]} (${lo.toFixed(0)} -> ${hi.toFixed(0)} IOPS${cmp})`);
    }
  }
  for (const [name, bySize] of Object.entries(r.sizes)) {
    if (!['native', 'cow', 'row'].includes(name)) continue;
    const labels = Object.keys(bySize);
    if (labels.length < 2) continue;
    const first = bySize[labels[0]!]!.createMs.median;
    const last = bySize[labels[labels.length - 1]!]!.createMs.median;
    if (last / first > 3 && last > 50) a.push(`${name}: snapshot create time grows with volume size (${first.toFixed(1)} ms at ${labels[0]} -> ${last.toFixed(1)} ms at ${labels[labels.length - 1]}), expected constant`);
  }
  for (const [point, c] of Object.entries(r.poolCheck)) {
    if (c.sumUsed > 0 && (c.poolAlloc > 1.15 * c.sumUsed + 64 * MiB || c.poolAlloc < 0.85 * c.sumUsed)) {
      a.push(`space accounting at '${point}': the pool allocates ${(c.poolAlloc / MiB).toFixed(0)} MiB but the volumes' used adds up to ${(c.sumUsed / MiB).toFixed(0)} MiB`);
    }
  }
  for (const [name, o] of Object.entries(r.overwrite)) {
    // qcow2 copies a whole 64 KiB cluster on a 4 KiB first write: a big drop there is the format, not news.
    const limit = name.startsWith('qcow2') ? 20 : 5;
    if (o.iopsAfter.median && o.iopsBefore.median / o.iopsAfter.median > limit) a.push(`${name}: 4K overwrite IOPS drop ${(o.iopsBefore.median / o.iopsAfter.median).toFixed(1)}x after a snapshot`);
  }
  if (r.errors.length) a.push(`${r.errors.length} measurement(s) failed: see errors`);
}

/** bench/results of the checkout this module was built from. */
export function defaultResultsDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  // dist/bench/snapshot-strategies -> bench/results, or bench/snapshot-strategies when run from source.
  const root = here.includes(`${join('dist', 'bench')}`) ? resolve(here, '../../../bench/results') : resolve(here, '../results');
  return root;
}
