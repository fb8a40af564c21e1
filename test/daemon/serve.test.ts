/**
 * `strata serve` end to end: the embedded default pool, volumes exported over
 * NBD to the real qemu-img/qemu-io/nbdinfo, the CLI going through the daemon's
 * control socket, live export changes, refusals, graceful shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBuilt, run, startDaemon, strata, tmp, type Daemon } from '../helpers/cli.js';

describe('strata serve', () => {
  let dir: string;
  let home: string;
  let d: Daemon;
  let url: (name: string) => string;

  beforeAll(async () => {
    ensureBuilt();
    dir = tmp();
    home = join(dir, 'home');
    d = await startDaemon(home);
    url = (name) => `nbd://127.0.0.1:${d.nbdPort}/${name}`;
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('creates the default pool with a demo volume on first run', () => {
    const r = strata(home, ['list', '-H', '-o', 'name,type']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('tank\tfilesystem');
    expect(r.stdout).toContain('tank/demo\tvolume');
    const list = run('nbdinfo', ['--list', `nbd://127.0.0.1:${d.nbdPort}`]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('export="tank/demo"');
  });

  it('refuses a second daemon on the same home', () => {
    const r = strata(home, ['serve', '--nbd', 'off', '--http', 'off']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/another strata daemon \(process \d+\)/);
  });

  it('serves a volume created through the CLI while running; qemu-img writes and reads it back', () => {
    expect(strata(home, ['create', '-s', '-V', '128M', 'tank/vm1']).code).toBe(0);
    const img = join(dir, 'src.raw');
    const data = Buffer.alloc(32 * 1024 * 1024);
    randomBytes(8 * 1024 * 1024).copy(data, 4 * 1024 * 1024);
    writeFileSync(img, data);
    const conv = run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', img, url('tank/vm1')]);
    expect(conv.stderr).toBe('');
    expect(conv.code).toBe(0);
    const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, url('tank/vm1')]);
    expect(cmp.stdout).toContain('Images are identical');
    const back = join(dir, 'back.raw');
    expect(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('tank/vm1'), back]).code).toBe(0);
    expect(readFileSync(back).subarray(0, data.length).equals(data)).toBe(true);
  });

  it('reports holes and data with nbdinfo --map', () => {
    const r = run('nbdinfo', ['--map', '--json', url('tank/vm1')]);
    expect(r.code).toBe(0);
    const map = JSON.parse(r.stdout) as { offset: number; length: number; type: number }[];
    const at = (off: number) => map.find((e) => e.offset <= off && off < e.offset + e.length)!;
    expect(at(0).type & 1).toBe(1); // hole (leading zeros were never written)
    expect(at(5 * 1024 * 1024).type).toBe(0); // data
    expect(at(100 * 1024 * 1024).type & 3).toBe(3); // hole + zero
  });

  it('qemu-io write/zero/discard/flush patterns read back as written', () => {
    const cmds = ['write -P 0x5a 0 1M', 'write -z 256k 64k', 'discard 512k 128k', 'flush', 'read -P 0x5a 0 256k', 'read -P 0 256k 64k', 'read -P 0x5a 320k 192k', 'read -P 0 512k 128k', 'read -P 0x5a 640k 384k'];
    const r = run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), url('tank/vm1')]);
    expect(r.stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(r.code).toBe(0);
  });

  it('refuses to destroy a volume that is in use, unless forced', async () => {
    // Hold an NBD connection open with qemu-nbd's client side: nbdsh keeps it while sleeping.
    const { spawn } = await import('node:child_process');
    // libnbd's Python module (Debian's python3-libnbd) holds a connection open.
    const py = `import nbd, time\nh = nbd.NBD()\nh.connect_uri(${JSON.stringify(url('tank/vm1'))})\nprint("connected", flush=True)\ntime.sleep(30)`;
    const holder = spawn('/usr/bin/python3', ['-c', py], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((res, rej) => {
        holder.stdout!.on('data', (b: Buffer) => b.toString().includes('connected') && res());
        holder.once('exit', (c) => rej(new Error(`nbdsh exited ${c}`)));
      });
      const r = strata(home, ['destroy', 'tank/vm1']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/in use/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(strata(home, ['list', '-H', '-o', 'name', 'tank/vm1']).stdout.trim()).toBe('tank/vm1');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('removes a destroyed volume from the export list without restart', async () => {
    expect(strata(home, ['create', '-s', '-V', '16M', 'tank/tmpvol']).code).toBe(0);
    expect(run('nbdinfo', ['--list', `nbd://127.0.0.1:${d.nbdPort}`]).stdout).toContain('tank/tmpvol');
    expect(strata(home, ['destroy', 'tank/tmpvol']).code).toBe(0);
    expect(run('nbdinfo', ['--list', `nbd://127.0.0.1:${d.nbdPort}`]).stdout).not.toContain('tank/tmpvol');
    const r = run('nbdinfo', [url('tank/tmpvol')]);
    expect(r.code).not.toBe(0);
  });

  it('serves the HTTP API', async () => {
    const res = await fetch(`http://127.0.0.1:${d.httpPort}/api/pools`);
    const pools = (await res.json()) as { name: string; health: string }[];
    expect(pools.map((p) => p.name)).toContain('tank');
  });

  it('shuts down gracefully on SIGTERM; data written and flushed survives a restart', async () => {
    const before = join(dir, 'before.raw');
    expect(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('tank/vm1'), before]).code).toBe(0);
    const code = await d.stop('SIGTERM');
    expect(code).toBe(0);
    const r = strata(home, ['list', '-H', '-o', 'name', 'tank/vm1']);
    expect(r.code).toBe(0);
    d = await startDaemon(home);
    url = (name) => `nbd://127.0.0.1:${d.nbdPort}/${name}`;
    const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', before, url('tank/vm1')]);
    expect(cmp.stdout).toContain('Images are identical');
  });
});
