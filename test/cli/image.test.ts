/**
 * `strata image ...` against qemu-img: what we create, convert, snapshot,
 * commit and rebase is accepted by qemu-img/qemu-io; what we report (info,
 * check, map) matches what qemu-img reports.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProject, qemuCheck, qemuImg, qemuImgStatus, qemuIo, qemuRaw, strata, tempDir } from '../formats/qcow2/helpers.js';

const t = tempDir('cli-image');
let build: ReturnType<typeof buildProject>;
const run = (...args: string[]) => strata(build.cli, args, t.dir);
const ok = (...args: string[]) => {
  const r = run(...args);
  if (r.status !== 0) throw new Error(`strata image ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
};
const p = (n: string) => join(t.dir, n);

beforeAll(() => {
  build = buildProject('cli');
});
afterAll(() => {
  build?.cleanup();
  t.cleanup();
});

function expectClean(f: string): void {
  const c = qemuCheck(f);
  expect(c.status).toBe(0);
  expect(c.corruptions ?? 0).toBe(0);
  expect(c.leaks ?? 0).toBe(0);
}

type Json = Record<string, unknown>;
function comparable(info: Json): Json {
  const o = { ...info };
  delete o['filename'];
  delete o['actual-size'];
  delete o['full-backing-filename'];
  return o;
}

describe('strata image', () => {
  it('create: every -o option, accepted by qemu-img with the same info', () => {
    const variants = [
      'cluster_size=4k,refcount_bits=1',
      'compat=0.10',
      'extended_l2=on,cluster_size=128k',
      'compression_type=zstd,lazy_refcounts=on',
      'cluster_size=512,refcount_bits=64,preallocation=metadata',
      'preallocation=full,cluster_size=2M',
    ];
    variants.forEach((o, i) => {
      const f = p(`create-${i}.qcow2`);
      ok('create', '-f', 'qcow2', '-o', o, f, '5M');
      expectClean(f);
      const ours = JSON.parse(ok('info', '--output=json', f)) as Json;
      const theirs = JSON.parse(qemuImg('info', '--output=json', f)) as Json;
      expect(comparable(ours)).toEqual(comparable(theirs));
    });
    ok('create', '-f', 'raw', p('r.raw'), '3M');
    expect(JSON.parse(qemuImg('info', '--output=json', p('r.raw')))['virtual-size']).toBe(3 << 20);
    // Bad options: one line, non-zero.
    const bad = run('create', '-f', 'qcow2', '-o', 'cluster_size=3000', p('bad.qcow2'), '1M');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('info matches qemu-img for snapshots and a backing chain (--backing-chain)', () => {
    const base = p('ib.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=16k', base, '4M');
    qemuIo(base, ['write -P 1 0 1M']);
    qemuImg('snapshot', '-c', 'one', base);
    const top = p('it.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'ib.qcow2', '-F', 'qcow2', top);
    const ours = JSON.parse(ok('info', '--output=json', '--backing-chain', top)) as Json[];
    const theirs = JSON.parse(qemuImg('info', '--output=json', '--backing-chain', top)) as Json[];
    expect(ours.map(comparable)).toEqual(theirs.map(comparable));
  });

  it('check agrees with qemu-img (clean, leaked, corrupt) and repairs', () => {
    const f = p('chk.qcow2');
    const raw = p('chk.raw');
    qemuImg('create', '-f', 'raw', raw, '4M');
    qemuIo(raw, ['write -P 9 0 1M', 'write -P 3 2M 64k'], 'raw');
    qemuImg('convert', '-O', 'qcow2', '-c', raw, f);
    qemuIo(f, ['write -P 4 3M 128k']);
    expect(JSON.parse(ok('check', '--output=json', f))).toEqual({ ...JSON.parse(qemuImg('check', '--output=json', f)), filename: f });
    // Leak: bump the refcount of a free cluster far past the end of the data.
    const leak = p('leak.qcow2');
    qemuImg('create', '-f', 'qcow2', leak, '4M');
    qemuIo(leak, ['write -P 1 0 64k', 'write -P 1 64k 64k']);
    const first = (JSON.parse(ok('map', '--output=json', leak)) as Array<{ offset?: number }>)[0]!.offset!;
    qemuIo(leak, ['discard 0 64k']);
    patchRefcount(leak, first / 65536, 1); // a freed cluster inside the file, counted again
    const ql = qemuCheck(leak);
    const sl = run('check', '--output=json', leak);
    expect(sl.status).toBe(3);
    expect(ql.status).toBe(3);
    expect((JSON.parse(sl.stdout) as Json)['leaks']).toBe(ql.leaks);
    expect(run('check', '-r', 'leaks', leak).status).toBe(0);
    expectClean(leak);
    // Corruption: zero the refcount of a used data cluster.
    const bad = p('bad-rc.qcow2');
    qemuImg('create', '-f', 'qcow2', bad, '4M');
    qemuIo(bad, ['write -P 1 0 64k']);
    const map = JSON.parse(ok('map', '--output=json', bad)) as Array<{ offset?: number }>;
    patchRefcount(bad, map[0]!.offset! / 65536, 0);
    expect(qemuCheck(bad).status).toBe(2);
    const sc = run('check', '--output=json', bad);
    expect(sc.status).toBe(2);
    expect((JSON.parse(sc.stdout) as Json)['corruptions']).toBe(qemuCheck(bad).corruptions);
    expect(run('check', '-r', 'all', bad).status).toBe(0);
    expectClean(bad);
  });

  it('convert raw -> qcow2 (plain, -c zlib/zstd) -> raw, and -l snapshot', () => {
    const raw = p('cv.raw');
    qemuImg('create', '-f', 'raw', raw, '16M');
    qemuIo(raw, ['write -P 0x11 0 3M', 'write -P 0x22 8M 1M', 'write -P 0 12M 1M', 'write -P 0x33 15M 4k'], 'raw');
    for (const [name, args] of [
      ['plain', ['-O', 'qcow2']],
      ['zlib', ['-O', 'qcow2', '-c']],
      ['zstd', ['-O', 'qcow2', '-c', '-o', 'compression_type=zstd']],
      ['v2 4k', ['-O', 'qcow2', '-o', 'compat=0.10,cluster_size=4k']],
      ['ext', ['-O', 'qcow2', '-o', 'extended_l2=on']],
    ] as Array<[string, string[]]>) {
      const q = p(`cv-${name.replace(/\W/g, '')}.qcow2`);
      ok('convert', '-f', 'raw', ...args, raw, q);
      expectClean(q);
      expect(qemuImgStatus('compare', '-f', 'raw', '-F', 'qcow2', raw, q).status).toBe(0);
      const back = p(`cv-${name.replace(/\W/g, '')}.raw`);
      ok('convert', '-O', 'raw', q, back);
      expect(qemuImgStatus('compare', '-f', 'raw', '-F', 'raw', raw, back).status).toBe(0);
    }
    // Sparse: 4 MiB of data in 16 MiB gives an image not much larger than the data.
    const info = JSON.parse(qemuImg('info', '--output=json', p('cv-plain.qcow2'))) as Json;
    expect(info['actual-size'] as number).toBeLessThan(5 << 20);
    // -l: convert an internal snapshot made by qemu-img.
    const s = p('cv-snap.qcow2');
    qemuImg('create', '-f', 'qcow2', s, '2M');
    qemuIo(s, ['write -P 5 0 1M']);
    qemuImg('snapshot', '-c', 'then', s);
    qemuIo(s, ['write -P 6 0 2M']);
    ok('convert', '-l', 'snapshot.name=then', '-O', 'raw', s, p('then.raw'));
    expect(qemuRaw(p('then.raw'), t.dir, 'raw').equals(qemuRaw(s, t.dir, 'qcow2', ['-l', 'snapshot.name=then']))).toBe(true);
  });

  it('convert of a sparse raw file skips its holes and zero blocks: same allocation as qemu-img convert', () => {
    const raw = p('holes.raw');
    qemuImg('create', '-f', 'raw', raw, '64M');
    qemuIo(raw, ['write -P 0x11 1M 2M', 'write -P 0 4M 1M', 'write -P 0x22 8M 4k', 'write -P 0x33 63M 1M'], 'raw');
    for (const [fmt, opts] of [
      ['qcow2', []],
      ['qcow2', ['-o', 'cluster_size=4k']],
      ['raw', []],
    ] as Array<[string, string[]]>) {
      const ours = p(`holes-ours.${fmt}`);
      const theirs = p(`holes-qemu.${fmt}`);
      ok('convert', '-f', 'raw', '-O', fmt, ...opts, raw, ours);
      qemuImg('convert', '-f', 'raw', '-O', fmt, ...opts, raw, theirs);
      expect(qemuImgStatus('compare', '-f', 'raw', '-F', fmt, raw, ours).status).toBe(0);
      if (fmt === 'qcow2') {
        expectClean(ours);
        const data = (f: string) =>
          (JSON.parse(qemuImg('map', '--output=json', '-f', fmt, f)) as Array<{ start: number; length: number; data: boolean }>)
            .filter((e) => e.data)
            .map((e) => [e.start, e.length]);
        expect(data(ours)).toEqual(data(theirs));
      }
    }
  });

  it('snapshot -c/-l/-a/-d interoperate with qemu-img', () => {
    const f = p('sn.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4k', f, '2M');
    qemuIo(f, ['write -P 1 0 512k']);
    const v1 = qemuRaw(f, t.dir);
    ok('snapshot', '-c', 'first', f);
    expectClean(f);
    qemuIo(f, ['write -P 2 64k 64k', 'write -z 256k 64k']);
    const v2 = qemuRaw(f, t.dir);
    qemuImg('snapshot', '-c', 'second', f);
    expect(ok('snapshot', '-l', f)).toMatch(/first[\s\S]*second/);
    expect(qemuImg('snapshot', '-l', f)).toMatch(/first/);
    expect(qemuRaw(f, t.dir, 'qcow2', ['-l', 'snapshot.name=first']).equals(v1)).toBe(true);
    ok('snapshot', '-a', 'first', f);
    expectClean(f);
    expect(qemuRaw(f, t.dir).equals(v1)).toBe(true);
    qemuIo(f, ['write -P 3 0 4k']);
    ok('snapshot', '-d', 'first', f);
    expectClean(f);
    qemuImg('snapshot', '-a', 'second', f);
    expect(qemuRaw(f, t.dir).equals(v2)).toBe(true);
    ok('snapshot', '-d', 'second', f);
    expectClean(f);
    expect(qemuImg('snapshot', '-l', f).trim()).toBe('');
    expect(run('snapshot', '-a', 'nope', f).status).not.toBe(0);
  });

  it('commit writes the top into its backing file and empties the top', () => {
    const base = p('cm-base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '4M');
    qemuIo(base, ['write -P 1 0 4M']);
    const top = p('cm-top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4k', '-b', 'cm-base.qcow2', '-F', 'qcow2', top);
    qemuIo(top, ['write -P 2 100k 5k', 'write -z 1M 64k', 'write -P 3 3M 1M']);
    const want = qemuRaw(top, t.dir);
    expect(ok('commit', top)).toMatch(/Image committed/);
    expectClean(base);
    expectClean(top);
    expect(qemuRaw(base, t.dir).equals(want)).toBe(true);
    expect(qemuRaw(top, t.dir).equals(want)).toBe(true);
    const m = JSON.parse(qemuImg('map', '--output=json', top)) as Array<{ depth: number; data: boolean }>;
    expect(m.every((e) => e.depth === 1)).toBe(true);
  });

  it('rebase: safe (content kept) and -u (header only)', () => {
    const base = p('rb-base.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '2M');
    qemuIo(base, ['write -P 1 0 2M']);
    const mid = p('rb-mid.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'rb-base.qcow2', '-F', 'qcow2', mid);
    qemuIo(mid, ['write -P 2 512k 256k']);
    const top = p('rb-top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-b', 'rb-mid.qcow2', '-F', 'qcow2', top);
    qemuIo(top, ['write -P 3 0 64k']);
    const want = qemuRaw(top, t.dir);
    ok('rebase', '-b', 'rb-base.qcow2', '-F', 'qcow2', top);
    expectClean(top);
    expect((JSON.parse(qemuImg('info', '--output=json', top)) as Json)['backing-filename']).toBe('rb-base.qcow2');
    expect(qemuRaw(top, t.dir).equals(want)).toBe(true);
    ok('rebase', '-b', '', top);
    expect(qemuRaw(top, t.dir).equals(want)).toBe(true);
    ok('rebase', '-u', '-b', 'rb-mid.qcow2', '-F', 'qcow2', top);
    expect((JSON.parse(qemuImg('info', '--output=json', top)) as Json)['backing-filename']).toBe('rb-mid.qcow2');
  });

  it('compare exit codes; map matches qemu-img on a qcow2 chain; resize', () => {
    const a = p('cmp-a.qcow2');
    const b = p('cmp-b.qcow2');
    qemuImg('create', '-f', 'qcow2', a, '2M');
    qemuImg('create', '-f', 'qcow2', b, '2M');
    qemuIo(a, ['write -P 1 0 64k']);
    qemuIo(b, ['write -P 1 0 64k']);
    expect(run('compare', a, b).status).toBe(0);
    qemuIo(b, ['write -P 2 1M 512']);
    const r = run('compare', a, b);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/Content mismatch at offset 1048576!/);
    expect(run('compare', a, p('missing.qcow2')).status).toBe(2);

    const top = p('map-top.qcow2');
    qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=4k', '-b', 'cmp-b.qcow2', '-F', 'qcow2', top, '3M');
    qemuIo(top, ['write -P 7 8k 8k', 'write -z 1M 64k']);
    expect(JSON.parse(ok('map', '--output=json', top))).toEqual(JSON.parse(qemuImg('map', '--output=json', top)));

    ok('resize', a, '+1G');
    expectClean(a);
    expect((JSON.parse(qemuImg('info', '--output=json', a)) as Json)['virtual-size']).toBe(2 * 2 ** 20 + 2 ** 30);
    qemuIo(a, ['write -P 9 1G 64k']);
    expectClean(a);
    expect(run('resize', a, '1M').status).not.toBe(0);
  });
});

/** Set the 16-bit refcount of `cluster` in the first refcount block (test images are small). */
function patchRefcount(file: string, cluster: number, value: number): void {
  const fd = fs.openSync(file, 'r+');
  const h = Buffer.alloc(64);
  fs.readSync(fd, h, 0, 64, 0);
  const rt = Number(h.readBigUInt64BE(48));
  const e = Buffer.alloc(8);
  fs.readSync(fd, e, 0, 8, rt);
  const rb = Number(e.readBigUInt64BE(0));
  const v = Buffer.alloc(2);
  v.writeUInt16BE(value);
  fs.writeSync(fd, v, 0, 2, rb + cluster * 2);
  fs.closeSync(fd);
}
