/**
 * bench/snapshots: native snapshot costs, in-process on a file-backed pool.
 *
 *   node dist/bench/snapshots/run.js [--dir /tmp] [--big 1G] [--rounds 5] [--snaps 500]
 *
 * Jobs (medians of --rounds, small and big alternated A/B):
 *  - snapshot creation of a volume with 16 MiB written vs --big written
 *    (constant time: the ratio big/small must stay under 1.5);
 *  - clone time (one clone of a snapshot of the big volume);
 *  - 100 clones from one snapshot (total, one call each);
 *  - rollback time (16 MiB written since the snapshot);
 *  - destroying --snaps snapshots (each holding unique blocks) in one call
 *    while a writer streams to another volume: the writer's throughput
 *    during the destroy vs before it (target >= 0.7), for the batched
 *    destroy (one txg per budget of dead-list work, what the CLI does), for
 *    `destroy -r` of their volume, and, as the A/B reference, everything in
 *    one txg.
 * Prints a table and writes bench/results/snapshots.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PoolManager } from '../../src/daemon/services.js';
import { parseSize } from '../../src/pool/dataset/units.js';
import type { Volume } from '../../src/volume/volume.js';
import { destroySnapshots as destroySnapshotsOp, DESTROY_TXG_BUDGET } from '../../src/pool/dataset/snapshots.js';
import { median } from '../stats.js';

const MiB = 1024 * 1024;

function arg(k: string, d: string): string {
  const a = process.argv.slice(2);
  const i = a.indexOf(k);
  return i >= 0 ? a[i + 1]! : d;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Fill [0, bytes) with 1 MiB writes of incompressible data (a few distinct buffers, each block differs). */
async function fill(vol: Volume, bytes: number, qd = 8): Promise<void> {
  const bufs = Array.from({ length: 4 }, () => randomBytes(MiB));
  let next = 0;
  const n = bytes / MiB;
  await Promise.all(
    Array.from({ length: qd }, async () => {
      while (next < n) {
        const i = next++;
        const b = Buffer.from(bufs[i % 4]!);
        b.writeUInt32LE(i, 0);
        await vol.write(i * MiB, b);
      }
    }),
  );
  await vol.flush();
}

async function main(): Promise<void> {
  const base = arg('--dir', tmpdir());
  const big = parseSize(arg('--big', '1G'));
  const rounds = Number(arg('--rounds', '5'));
  const nSnaps = Number(arg('--snaps', '500'));
  const dir = mkdtempSync(join(base, 'strata-bench-snap-'));
  const results: Record<string, number | string> = { big_bytes: big, rounds, snaps: nSnaps, dir: base };
  const rows: [string, string][] = [];
  try {
    const mgr = new PoolManager(join(dir, 'home'));
    await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: big + 2048 * MiB });
    const pool = await mgr.pool('tank');
    await mgr.create('tank/small', { volsize: String(big), sparse: true });
    await mgr.create('tank/big', { volsize: String(big), sparse: true });
    const small = (await mgr.openVolume('tank/small')).volume;
    const bigv = (await mgr.openVolume('tank/big')).volume;
    let t = process.hrtime.bigint();
    await fill(small, 16 * MiB);
    await fill(bigv, big);
    results.fill_big_ms = ms(t);
    process.stderr.write(`filled ${big / MiB} MiB in ${(results.fill_big_ms / 1000).toFixed(1)} s\n`);

    // 1. Snapshot creation, alternating small/big; a 64 KiB write before each so every txg has data.
    const ts: number[] = [];
    const tb: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const [v, name, out] of [
        [small, 'tank/small', ts],
        [bigv, 'tank/big', tb],
      ] as const) {
        await v.write(r * 65536, randomBytes(65536));
        t = process.hrtime.bigint();
        await mgr.snapshot([`${name}@r${r}`]);
        out.push(ms(t));
      }
    }
    results.snapshot_small_ms = median(ts);
    results.snapshot_big_ms = median(tb);
    results.snapshot_ratio = median(tb) / median(ts);
    rows.push(['snapshot, 16 MiB written', `${median(ts).toFixed(1)} ms`]);
    rows.push([`snapshot, ${big / MiB} MiB written`, `${median(tb).toFixed(1)} ms`]);
    rows.push(['  ratio big/small (< 1.5)', (results.snapshot_ratio as number).toFixed(2)]);

    // 2. Clone time, and 100 clones from one snapshot.
    const tc: number[] = [];
    for (let r = 0; r < rounds; r++) {
      t = process.hrtime.bigint();
      await mgr.clone('tank/big@r0', [`tank/one${r}`]);
      tc.push(ms(t));
    }
    results.clone_ms = median(tc);
    rows.push(['clone (big volume)', `${median(tc).toFixed(1)} ms`]);
    t = process.hrtime.bigint();
    for (let c = 0; c < 100; c++) await mgr.clone('tank/big@r0', [`tank/many${c}`]);
    results.clones_100_total_ms = ms(t);
    rows.push(['100 clones of one snapshot (total)', `${(results.clones_100_total_ms as number).toFixed(0)} ms`]);
    t = process.hrtime.bigint();
    await mgr.clone('tank/big@r0', Array.from({ length: 100 }, (_, c) => `tank/batch${c}`));
    results.clones_100_one_call_ms = ms(t);
    rows.push(['100 clones in one call', `${(results.clones_100_one_call_ms as number).toFixed(0)} ms`]);
    for (let c = 0; c < 100; c++) await mgr.destroy(`tank/many${c}`);
    for (let c = 0; c < 100; c++) await mgr.destroy(`tank/batch${c}`);
    for (let r = 0; r < rounds; r++) await mgr.destroy(`tank/one${r}`);

    // 3. Rollback with 16 MiB written since the snapshot.
    const tr: number[] = [];
    for (let r = 0; r < rounds; r++) {
      await mgr.snapshot([`tank/big@rb${r}`]);
      const b = randomBytes(MiB);
      for (let i = 0; i < 16; i++) await bigv.write((r * 16 + i) * MiB, b);
      await bigv.flush();
      t = process.hrtime.bigint();
      await mgr.rollback(`tank/big@rb${r}`, { force: true });
      tr.push(ms(t));
    }
    results.rollback_ms = median(tr);
    rows.push(['rollback (16 MiB written since)', `${median(tr).toFixed(1)} ms`]);

    // 4. Destroy many snapshots while a writer runs: batched across txgs (what `strata destroy` does)
    //    and, for comparison in the same run, everything in one txg (the budget off).
    await mgr.create('tank/writer', { volsize: '1G', sparse: true });
    const writer = (await mgr.openVolume('tank/writer')).volume;
    for (const [mode, budget, key] of [
      ['one txg', Infinity, 'onetxg'],
      ['batched', DESTROY_TXG_BUDGET, 'batched'],
      ['destroy -r of their volume', DESTROY_TXG_BUDGET, 'volume'],
    ] as const) {
      await mgr.create(`tank/hist-${key}`, { volsize: '1G', sparse: true });
      const hist = (await mgr.openVolume(`tank/hist-${key}`)).volume;
      t = process.hrtime.bigint();
      const chunk = randomBytes(256 * 1024);
      const names: string[] = [];
      for (let i = 0; i < nSnaps; i++) {
        // 256 KiB overwritten between snapshots: every snapshot holds blocks of its own.
        await hist.write((i % 64) * 256 * 1024, chunk);
        names.push(`tank/hist-${key}@h${i}`);
        await mgr.snapshot([names[i]!]);
      }
      process.stderr.write(`${mode}: created ${nSnaps} snapshots in ${(ms(t) / 1000).toFixed(1)} s\n`);
      await pool.txg.syncNow();

      let written = 0;
      let stop = false;
      const wbuf = randomBytes(MiB);
      const wsize = writer.info().size;
      const samples: { at: number; bytes: number }[] = [];
      const writerLoop = (async () => {
        let off = 0;
        while (!stop) {
          await writer.write(off, wbuf);
          written += MiB;
          off = (off + MiB) % wsize;
        }
      })();
      const sampler = setInterval(() => samples.push({ at: performance.now(), bytes: written }), 50);
      const rate = (from: number, to: number) => {
        const a = samples.filter((s) => s.at >= from).at(0);
        const b = samples.filter((s) => s.at <= to).at(-1);
        return a && b && b.at > a.at ? (b.bytes - a.bytes) / MiB / ((b.at - a.at) / 1000) : NaN;
      };
      // Warm up, then the baseline window.
      await new Promise((r) => setTimeout(r, 1000));
      const b0 = performance.now();
      await new Promise((r) => setTimeout(r, 3000));
      const b1 = performance.now();
      const d0 = performance.now();
      if (key === 'volume') await mgr.destroy(`tank/hist-${key}`, { recursive: true, force: true });
      else await destroySnapshotsOp(pool, names, `bench destroy ${mode}`, budget);
      const d1 = performance.now();
      // A short destroy still gets at least 1 s of writer time measured from its start.
      if (d1 - d0 < 1000) await new Promise((r) => setTimeout(r, 1000 - (d1 - d0)));
      const d1w = Math.max(d1, d0 + 1000);
      stop = true;
      clearInterval(sampler);
      await writerLoop;
      const before = rate(b0, b1);
      const during = rate(d0, d1w);
      results[`destroy_${key}_ms`] = d1 - d0;
      results[`writer_before_${key}_mbs`] = before;
      results[`writer_during_${key}_mbs`] = during;
      results[`writer_ratio_${key}`] = during / before;
      rows.push([`destroy ${nSnaps} snapshots, ${mode}`, `${(d1 - d0).toFixed(0)} ms`]);
      rows.push(['  writer before / during', `${before.toFixed(1)} / ${during.toFixed(1)} MB/s`]);
      rows.push([`  ratio during/before${key !== 'onetxg' ? ' (>= 0.7)' : ''}`, (during / before).toFixed(2)]);
      if (key !== 'volume') await mgr.destroy(`tank/hist-${key}`, { force: true });
    }
    await pool.txg.syncNow();
    await mgr.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`strata native snapshots (${new Date().toISOString()})\n`);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/snapshots.json', JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
