/**
 * qcow2 benchmark (not a test; timings never go into tests).
 *
 * 1. convert raw -> qcow2 and qcow2 -> raw of a 1 GiB image (half data, half
 *    holes, alternating 1 MiB), `strata image convert` vs `qemu-img convert`,
 *    both as child processes, alternating A/B, medians and ratios.
 * 2. random 4 KiB reads through a backing chain of depth 1, 10 and 50,
 *    in-process (our merged chain index), with `qemu-img bench` on the same
 *    chain as a reference for how QEMU's read cost grows with depth.
 *
 * Usage: node dist/bench/qcow2/run.js [--size-mib N] [--runs N] [--reads N] [--dir DIR]
 * qemu-img convert's default cache mode (unsafe) never syncs the output;
 * strata syncs it by default (DESIGN: durable when the command returns), so
 * both pairings are measured. On tmpfs (--dir /dev/shm) syncing is free.
 * Writes bench/results/qcow2-<date>.json.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, writeSync, ftruncateSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openImage } from '../../formats/image-format.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const cli = join(repo, 'dist', 'bench', 'qcow2', 'image-cli.js');
const mainCli = join(repo, 'dist', 'src', 'cli', 'main.js');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return t;
}

function makeHalfData(path: string, size: number): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  const mib = 1024 * 1024;
  const buf = Buffer.alloc(mib);
  let x = 12345;
  for (let i = 0; i < mib; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buf.writeUInt32LE(x, i);
  }
  for (let off = 0; off < size; off += 2 * mib) {
    buf.writeUInt32LE(off >>> 0, 0); // every data MiB differs
    writeSync(fd, buf, 0, mib, off);
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
        const dst = join(dir, `out-${who}`);
        if (who === 'strata') out[c.name]!.strata.push(timed(process.execPath, [cli, 'image', 'convert', ...c.strata, dst]));
        else out[c.name]!.qemu.push(timed('qemu-img', ['convert', ...c.qemu, dst]));
        rmSync(dst, { force: true });
      }
    }
  }
  const res: Record<string, unknown> = {};
  // Start-up of the full `strata` binary (not the codec), for reference.
  const startup = median([0, 1, 2].map(() => timed(process.execPath, [mainCli, '--help'])));
  const imageStartup = median([0, 1, 2].map(() => timed(process.execPath, [cli, '--help'])));
  res['startup'] = { strataMainSec: startup, imageCliSec: imageStartup };
  console.log(`start-up: strata main ${startup.toFixed(3)} s, image-only entry ${imageStartup.toFixed(3)} s`);
  for (const [k, v] of Object.entries(out)) {
    const s = median(v.strata);
    const qm = median(v.qemu);
    res[k] = { strataSec: s, qemuSec: qm, speedRatio: qm / s, runs: v };
    console.log(`convert ${k}: strata ${s.toFixed(3)} s, qemu-img ${qm.toFixed(3)} s, strata speed = ${(qm / s).toFixed(2)}x qemu-img`);
  }
  return res;
}

async function chainBench(dir: string, depths: number[], reads: number) {
  const size = 256 * 1024 * 1024;
  const res: Record<string, unknown> = {};
  for (const depth of depths) {
    const d = join(dir, `chain${depth}`);
    mkdirSync(d);
    execFileSync('qemu-img', ['create', '-f', 'qcow2', join(d, 'l0.qcow2'), String(size)]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P 1 0 ${size / 2}`, join(d, 'l0.qcow2')]);
    for (let i = 1; i < depth; i++) {
      const f = join(d, `l${i}.qcow2`);
      execFileSync('qemu-img', ['create', '-f', 'qcow2', '-b', `l${i - 1}.qcow2`, '-F', 'qcow2', f]);
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${i % 250} ${((i * 7919) % 4096) * 65536} 64k`, f]);
    }
    const top = join(d, `l${depth - 1}.qcow2`);
    const dev = await openImage(top, { readOnly: true });
    let x = 99;
    const buf = Buffer.alloc(4096);
    // Warm-up pass builds the index and caches, as a running VM would have.
    for (let i = 0; i < reads; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      await dev.read((x % (size / 4096)) * 4096, 4096, buf);
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reads; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      await dev.read((x % (size / 4096)) * 4096, 4096, buf);
    }
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    await dev.close();
    // qemu-img bench: strided 4 KiB reads (not random, no warm-up control), for the depth trend only.
    const q = spawnSync('qemu-img', ['bench', '-f', 'qcow2', '-c', String(reads), '-d', '1', '-s', '4096', '-S', String(4096 * 7919), top], { encoding: 'utf8' });
    const m = /Run completed in ([\d.]+) seconds/.exec(q.stdout);
    const qsec = m ? Number(m[1]) : NaN;
    res[`depth${depth}`] = { reads, strataSec: sec, strataReadsPerSec: reads / sec, qemuImgBenchSec: qsec, qemuReadsPerSec: reads / qsec };
    console.log(`chain depth ${depth}: strata ${(reads / sec).toFixed(0)} reads/s; qemu-img bench ${(reads / qsec).toFixed(0)} reads/s`);
  }
  return res;
}

// --dir /dev/shm measures the codecs without the host disk's write-back noise.
const base = process.argv.includes('--dir') ? process.argv[process.argv.indexOf('--dir') + 1]! : tmpdir();
const dir = mkdtempSync(join(base, 'strata-bench-qcow2-'));
try {
  const sizeMiB = arg('--size-mib', 1024);
  const runs = arg('--runs', 3);
  const convert = await convertBench(dir, sizeMiB * 1024 * 1024, runs);
  const chain = await chainBench(dir, [1, 10, 50], arg('--reads', 20000));
  const result = { date: new Date().toISOString(), host: { node: process.version, dir: base }, sizeMiB, convert, chain };
  mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
  const outFile = join(repo, 'bench', 'results', `qcow2-${result.date.slice(0, 10)}-${base.replace(/\W+/g, '_')}.json`);
  writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  console.log(`wrote ${outFile}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
