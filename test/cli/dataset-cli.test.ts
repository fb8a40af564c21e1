/**
 * The happy paths the engine tests do not cover, through the real binary:
 * property sources in `get`, data in and out (`import`/`export`, sparse),
 * and a pool exported and imported again keeps its data.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureBuilt } from '../pool/engine/build.js';

let dir: string;
let home: string;

function ok(...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, '--home', home, ...args], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr, `strata ${args.join(' ')}`).toBe('');
  expect(r.status, `strata ${args.join(' ')}`).toBe(0);
  return r.stdout;
}

describe('CLI datasets and data transfer', () => {
  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'strata-cli-ds-'));
    home = join(dir, 'home');
    ok('pool', 'create', '-s', '128M', 'tank', join(dir, 'd1.img'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('get shows local, inherited from X and default', () => {
    ok('create', '-o', 'compression=zle', 'tank/a');
    ok('create', '-s', '-V', '16M', '-o', 'copies=2', 'tank/a/vol');
    const rows = ok('get', '-H', 'compression,copies,checksum,volsize', 'tank/a/vol')
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    expect(rows).toEqual([
      ['tank/a/vol', 'compression', 'zle', 'inherited from tank/a'],
      ['tank/a/vol', 'copies', '2', 'local'],
      ['tank/a/vol', 'checksum', 'fletcher4', 'default'],
      ['tank/a/vol', 'volsize', '16M', 'local'],
    ]);
    ok('inherit', 'compression', 'tank/a');
    expect(ok('get', '-H', '-o', 'value,source', 'compression', 'tank/a/vol').trim()).toBe('lz4\tdefault');
  });

  it('import a sparse raw image, export it back byte for byte; survives pool export/import', () => {
    const raw = join(dir, 'in.raw');
    const size = 20 * 1024 * 1024 + 4096; // not a multiple of the block size: rounded up
    const fd = openSync(raw, 'w');
    ftruncateSync(fd, size);
    const chunks: [number, Buffer][] = [
      [0, randomBytes(5000)],
      [3 * 1024 * 1024 + 17, randomBytes(70000)],
      [size - 4096, randomBytes(4096)],
    ];
    for (const [o, b] of chunks) writeSync(fd, b, 0, b.length, o);
    closeSync(fd);
    ok('import', raw, 'tank/imp');
    ok('pool', 'export', 'tank');
    ok('pool', 'import', '-d', dir, 'tank');
    const out = join(dir, 'out.raw');
    ok('export', 'tank/imp', out);
    const want = readFileSync(raw);
    const got = readFileSync(out);
    expect(got.length).toBe(Math.ceil(size / 16384) * 16384);
    expect(got.subarray(0, size).equals(want)).toBe(true);
    expect(got.subarray(size).equals(Buffer.alloc(got.length - size))).toBe(true);
    // Sparse both ways: the volume holds about the data, not the whole size.
    const refer = Number(ok('list', '-H', '-p', '-o', 'refer', 'tank/imp').trim());
    expect(refer).toBeLessThan(1024 * 1024);
    expect(statSync(out).blocks * 512).toBeLessThan(4 * 1024 * 1024);
    writeFileSync(join(dir, 'done'), '');
  });
});
