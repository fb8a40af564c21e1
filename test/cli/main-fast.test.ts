/**
 * The CLI bundle (dist/src/cli/main-fast.cjs, what bin/strata runs for
 * `strata image ...`) behaves exactly as the ES module program
 * (dist/src/cli/main.js): same stdout, stderr, exit code and files, for the
 * fast path (plain forms), the hand-over to main.js (help, mistakes) and
 * failures. Both run in the same environment, from twin directories.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, BUNDLE, ensureBundled, tmp } from '../helpers/cli.js';

let dir = '';

function runIn(entry: string, cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [entry, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Run `args` through both entries: read-only commands in the fixture
 * directory itself, commands that write (`out: true`) each in its own empty
 * twin directory beside it (the fixtures are then ../fx/...).
 */
function both(args: string[], out = false) {
  const a = join(dir, out ? 'esm' : 'fx');
  const b = join(dir, out ? 'bundle' : 'fx');
  return { esm: runIn(BIN, a, args), bundle: runIn(BUNDLE, b, args) };
}

beforeAll(() => {
  ensureBundled();
  dir = tmp('strata-main-fast-');
  for (const d of ['fx', 'esm', 'bundle']) mkdirSync(join(dir, d));
  const q = (...args: string[]) => {
    const r = spawnSync(args[0]!, args.slice(1), { cwd: join(dir, 'fx'), encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  };
  q('qemu-img', 'create', '-q', '-f', 'qcow2', 'base.qcow2', '4M');
  q('qemu-io', '-f', 'qcow2', '-c', 'write -P 7 64k 192k', '-c', 'write -z 1M 64k', 'base.qcow2');
  q('qemu-img', 'snapshot', '-c', 'snap1', 'base.qcow2');
  q('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2');
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the CLI bundle and the ES module program agree', () => {
  const cases: string[][] = [
    ['image', 'info', 'base.qcow2'],
    ['image', 'info', '--output=json', '--backing-chain', 'top.qcow2'],
    ['image', 'check', '--output=json', 'base.qcow2'],
    ['image', 'map', '--output=json', 'top.qcow2'],
    ['image', 'snapshot', '-l', 'base.qcow2'],
    ['image', 'compare', 'base.qcow2', 'top.qcow2'],
    ['--home', 'somewhere', 'image', 'info', 'base.qcow2'],
    ['--home=somewhere', 'image', 'map', 'base.qcow2'],
    // handed over to main.js: help, mistakes
    ['image', '--help'],
    ['image', 'info', '--help'],
    ['image', 'frob'],
    ['image', 'info'],
    ['image', 'convert', '-O', 'vmdk', 'base.qcow2', 'x'],
    // failures on the fast path
    ['image', 'info', 'missing.qcow2'],
    ['image', 'check', 'missing.qcow2'],
  ];
  for (const args of cases) {
    it(args.join(' '), () => {
      const { esm, bundle } = both(args);
      expect(bundle).toEqual(esm);
    });
  }

  it('output through a pipe is complete (stdout drains before the process exits)', () => {
    // A map with thousands of extents: a few hundred KB of JSON, far more than a pipe holds.
    const fx = join(dir, 'fx');
    const raw = Buffer.alloc(8 << 20);
    for (let o = 0; o < raw.length; o += 8192) raw.fill(1 + ((o >> 13) % 250), o, o + 4096);
    writeFileSync(join(fx, 'many.raw'), raw);
    const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', 'many.raw', 'many.qcow2'], { cwd: fx });
    expect(c.status).toBe(0);
    const whole = runIn(BIN, fx, ['image', 'map', '--output=json', 'many.qcow2']).stdout;
    expect(whole.length).toBeGreaterThan(128 * 1024);
    for (const entry of [BIN, BUNDLE]) {
      // The reader is slower than the writer (a shell pipeline into wc after a pause).
      const r = spawnSync('sh', ['-c', `"${process.execPath}" "${entry}" image map --output=json many.qcow2 | (sleep 0.2; wc -c)`], { cwd: fx, encoding: 'utf8' });
      expect(Number(r.stdout.trim())).toBe(Buffer.byteLength(whole));
    }
  });

  it('convert and create write the same files', () => {
    for (const args of [
      ['image', 'convert', '-O', 'raw', '../fx/top.qcow2', 'out.raw'],
      ['image', 'convert', '-c', '-O', 'qcow2', '../fx/base.qcow2', 'out.qcow2'],
      ['image', 'create', '-f', 'qcow2', 'new.qcow2', '8M'],
    ]) {
      const { esm, bundle } = both(args, true);
      expect(bundle).toEqual(esm);
      expect(esm.code).toBe(0);
    }
    for (const f of ['out.raw', 'out.qcow2', 'new.qcow2']) {
      expect(readFileSync(join(dir, 'bundle', f)).equals(readFileSync(join(dir, 'esm', f)))).toBe(true);
    }
    // compressed clusters went through zlib, loaded lazily from the bundle
    const check = spawnSync('qemu-img', ['check', join(dir, 'bundle', 'out.qcow2')], { encoding: 'utf8' });
    expect(check.status).toBe(0);
  });
});
