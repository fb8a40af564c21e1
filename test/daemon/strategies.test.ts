/**
 * Snapshot strategies through `strata serve` and real NBD clients: for
 * native, cow and row volumes, qemu-io writes while the CLI snapshots
 * through the daemon, snapshot exports read exactly their data with
 * qemu-img compare, measured amplification is shown by `strata get` and the
 * HTTP API, and template provisioning clones 100 VMs in one command, each
 * exported at once and resettable to its template.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, run, startDaemon, strata, tmp, type Daemon } from '../helpers/cli.js';

const MiB = 1024 * 1024;

describe('snapshot strategies served over NBD', () => {
  let dir: string;
  let home: string;
  let d: Daemon;
  const url = (name: string) => `nbd://127.0.0.1:${d.nbdPort}/${name}`;
  const ok = (args: string[]) => {
    const r = strata(home, args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const same = (file: string, target: string) => {
    const r = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, url(target)]);
    expect(r.stdout + r.stderr).toContain('Images are identical');
  };

  beforeAll(async () => {
    ensureBuilt();
    dir = tmp();
    home = join(dir, 'home');
    d = await startDaemon(home);
  });
  afterAll(async () => {
    await d?.stop();
  });

  it.each(['native', 'cow', 'row'])('snapmode=%s: snapshots while exported read back exactly with qemu-img', (mode) => {
    const vol = `tank/${mode}`;
    ok(['create', '-s', '-V', '16M', '-o', `snapmode=${mode}`, vol]);
    expect(ok(['get', '-H', '-o', 'value', 'snapmode', vol]).trim()).toBe(mode);
    // First contents, through NBD.
    const v1 = join(dir, `${mode}-1.raw`);
    const a = Buffer.alloc(16 * MiB);
    randomBytes(6 * MiB).copy(a, MiB);
    writeFileSync(v1, a);
    expect(run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', v1, url(vol)]).code).toBe(0);
    ok(['snapshot', `${vol}@one`]);
    // Overwrites, zeroes and discards over snapshotted data, with qemu-io.
    const io = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 2M', '-c', 'write -z 4M 1M', '-c', 'discard 6M 512k', '-c', 'write -P 0x11 12M 64k', '-c', 'flush', url(vol)]);
    expect(io.stderr).toBe('');
    const b = Buffer.from(a);
    b.fill(0x5a, MiB, 3 * MiB);
    b.fill(0, 4 * MiB, 5 * MiB);
    b.fill(0, 6 * MiB, 6 * MiB + 512 * 1024);
    b.fill(0x11, 12 * MiB, 12 * MiB + 64 * 1024);
    const v2 = join(dir, `${mode}-2.raw`);
    writeFileSync(v2, b);
    same(v2, vol);
    ok(['snapshot', `${vol}@two`]);
    expect(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 8M', url(vol)]).code).toBe(0);
    // Snapshot exports: read-only, exactly their data.
    same(v1, `${vol}@one`);
    same(v2, `${vol}@two`);
    const w = run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', url(`${vol}@one`)]);
    expect(w.stdout + w.stderr).toMatch(/Operation not permitted|read-only|Permission denied/i);
    // Destroying the middle snapshot keeps the first one's data (cow and row merge).
    ok(['destroy', `${vol}@two`]);
    same(v1, `${vol}@one`);
    // Amplification is measured, not estimated.
    expect(ok(['get', '-H', '-o', 'value', 'amplification', vol]).trim()).toMatch(/^\d+\.\d\dx$/);
    ok(['rollback', `${vol}@one`]);
    same(v1, vol);
  });

  it('the API reports device I/O and amplification per volume', async () => {
    const res = await fetch(`http://127.0.0.1:${d.httpPort}/api/amplification`);
    const rows = (await res.json()) as { name: string; guestWriteBytes: number; deviceWriteBytes: number; amplification: number }[];
    const cow = rows.find((r) => r.name === 'tank/cow')!;
    const row = rows.find((r) => r.name === 'tank/row')!;
    expect(cow.guestWriteBytes).toBeGreaterThan(0);
    expect(cow.deviceWriteBytes).toBeGreaterThan(0);
    // cow copies out what the snapshots needed: it writes more per guest byte than row.
    expect(cow.amplification).toBeGreaterThan(row.amplification);
  });

  it('cow snapshots refuse clones with one clear line', () => {
    const r = strata(home, ['clone', 'tank/cow@one', 'tank/cowclone']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot be cloned/);
  });

  it.each(['native', 'row'])('template provisioning (%s): 100 clones in one command, each exported at once, reset to the template', (mode) => {
    const tpl = `tank/tpl-${mode}`;
    ok(['create', '-s', '-V', '32M', '-o', `snapmode=${mode}`, tpl]);
    const img = join(dir, `tpl-${mode}.raw`);
    const data = Buffer.alloc(32 * MiB);
    randomBytes(4 * MiB).copy(data, 2 * MiB);
    writeFileSync(img, data);
    expect(run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', img, url(tpl)]).code).toBe(0);
    ok(['snapshot', `${tpl}@golden`]);
    ok(['create', `tank/vms-${mode}`]);
    const names = Array.from({ length: 100 }, (_, i) => `tank/vms-${mode}/vm${String(i + 1).padStart(3, '0')}`);
    const t0 = Date.now();
    ok(['clone', '--template', `${tpl}@golden`, ...names]);
    const ms = Date.now() - t0;
    console.log(`template provisioning (${mode}): 100 clones in ${ms} ms (one CLI command, through the daemon)`);
    expect(ms).toBeLessThan(5000);
    // libnbd lists the exports (nbdinfo --list would also probe each one's content: slow with hundreds).
    const py = 'import nbd,sys\nh=nbd.NBD()\nh.set_opt_mode(True)\nh.connect_uri(sys.argv[1])\nn=[]\nh.opt_list(lambda a,b: n.append(a))\nprint("\\n".join(n))';
    const l = run('/usr/bin/python3', ['-c', py, `nbd://127.0.0.1:${d.nbdPort}`]);
    expect(l.stderr).toBe('');
    const listed = new Set(l.stdout.trim().split('\n'));
    for (const n of names) expect(listed.has(n)).toBe(true);
    expect(run('nbdinfo', ['--size', url(names[99]!)]).stdout.trim()).toBe(String(32 * MiB));
    same(img, names[41]!);
    expect(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 1M', url(names[41]!)]).code).toBe(0);
    same(img, names[42]!);
    ok(['rollback', '-f', '--to-origin', names[41]!]);
    same(img, names[41]!);
  });
});
