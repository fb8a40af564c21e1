/**
 * Device management (issue 3) through the services the CLI calls: hot
 * spares, offline/online resilvering only what was born meanwhile (DTL by
 * birth txg), attach/detach, foreign labels; plus the CLI's status/iostat.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';

const MiB = 1024 * 1024;
let dir: string;
let mgr: PoolManager;
let n = 0;
const file = (size = 64 * MiB) => {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, '');
  truncateSync(p, size);
  return p;
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'strata-devices-'));
  mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 200 });
});
afterEach(async () => {
  await mgr.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

async function fill(vol: string, bytes: number, at = 0): Promise<Buffer> {
  const { volume, release } = await mgr.openVolume(vol);
  const data = randomBytes(bytes);
  await volume.write(at, data);
  await volume.flush();
  release();
  await (await mgr.pool(vol.split('/')[0]!)).txg.syncNow();
  return data;
}

async function readAll(vol: string, len: number): Promise<Buffer> {
  const { volume, release } = await mgr.openVolume(vol);
  const pool = await mgr.pool(vol.split('/')[0]!);
  pool.arc.clear();
  const b = Buffer.from(await volume.read(0, len));
  release();
  return b;
}

describe('pool devices', () => {
  it('a hot spare takes over a faulted device and is released after the replacement', async () => {
    const [a, b, s] = [file(), file(), file()];
    await mgr.poolCreate('tank', { groups: [{ type: 'mirror', paths: [a, b] }], spares: [s] });
    await mgr.create('tank/vol', { volsize: String(4 * MiB) });
    const data = await fill('tank/vol', 4 * MiB);
    const pool = await mgr.pool('tank');
    expect((await mgr.poolStatus('tank'))[0]!.config.spares[0]!.state).toBe('AVAIL');
    pool.vdevs.findLeaf(b)!.state = 'FAULTED';
    let st = (await mgr.poolStatus('tank'))[0]!;
    for (let i = 0; i < 100 && st.config.spares[0]!.state !== 'INUSE'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      st = (await mgr.poolStatus('tank'))[0]!;
    }
    expect(st.config.spares[0]!.state).toBe('INUSE');
    await mgr.poolWait('tank');
    st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.scan!.func).toBe('resilver');
    expect(st.scan!.state).toBe('finished');
    expect(st.config.pool.children[0]!.children[1]!.name).toBe('spare-1');
    // Still in use after export/import (one device, one leaf), and it holds the data:
    // lose the other side too and read.
    await mgr.poolExport('tank');
    await mgr.poolImport('tank', dir);
    st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.config.spares[0]!.state).toBe('INUSE');
    expect(st.config.pool.children[0]!.children[1]!.name).toBe('spare-1');
    await mgr.poolOffline('tank', a);
    expect((await readAll('tank/vol', 4 * MiB)).equals(data)).toBe(true);
    await mgr.poolOnline('tank', a, { wait: true });
    // Replace the faulted device: the spare goes back to the available list.
    const c = file();
    await mgr.poolReplace('tank', b, c, { wait: true });
    st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.config.spares[0]!.state).toBe('AVAIL');
    expect(st.state).toBe('ONLINE');
    expect(st.config.pool.children[0]!.children.map((x) => x.name)).toEqual([a, c]);
    expect((await readAll('tank/vol', 4 * MiB)).equals(data)).toBe(true);
  });

  it('offline then online resilvers only the blocks born while the device was away', async () => {
    const [a, b] = [file(), file()];
    await mgr.poolCreate('tank', { groups: [{ type: 'mirror', paths: [a, b] }] });
    await mgr.create('tank/vol', { volsize: String(8 * MiB), blocksize: '16384' });
    const first = await fill('tank/vol', 8 * MiB);
    await mgr.poolOffline('tank', b);
    expect((await mgr.poolStatus('tank'))[0]!.state).toBe('DEGRADED');
    const late = await fill('tank/vol', 256 * 1024, 1 * MiB);
    late.copy(first, 1 * MiB);
    await mgr.poolOnline('tank', b, { wait: true });
    const st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.state).toBe('ONLINE');
    expect(st.scan!.func).toBe('resilver');
    expect(st.scan!.minBirth).toBeGreaterThan(0);
    // 256K of data (plus a little metadata) was copied, not the 8M volume.
    expect(st.scan!.repaired).toBeGreaterThanOrEqual(256 * 1024);
    expect(st.scan!.repaired).toBeLessThan(2 * MiB);
    // b alone serves everything.
    await mgr.poolOffline('tank', a);
    expect((await readAll('tank/vol', 8 * MiB)).equals(first)).toBe(true);
    await mgr.poolOnline('tank', a, { wait: true });
    await mgr.poolScrub('tank', { wait: true });
    const s2 = (await mgr.poolStatus('tank'))[0]!;
    expect(s2.scan!.repaired).toBe(0);
    expect(s2.scan!.errors).toBe(0);
  });

  it('attach makes a single device a mirror; detach makes it single again; foreign labels need -f', async () => {
    const [a, b] = [file(), file()];
    await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [a] }] });
    await mgr.create('tank/vol', { volsize: String(4 * MiB) });
    const data = await fill('tank/vol', 4 * MiB);
    // A device of another (exported) pool is refused without force.
    const o = file();
    await mgr.poolCreate('other', { groups: [{ type: 'single', paths: [o] }] });
    await mgr.poolExport('other');
    await expect(mgr.poolAttach('tank', a, o)).rejects.toThrow(/pool 'other'.*-f/);
    await expect(mgr.poolAttach('tank', a, a)).rejects.toThrow(/part of pool/);
    await mgr.poolAttach('tank', a, b, { wait: true });
    let st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.config.pool.children[0]!.name).toBe('mirror-0');
    expect(st.scan!.state).toBe('finished');
    await mgr.poolDetach('tank', a);
    st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.config.pool.children[0]!.name).toBe(b);
    expect((await readAll('tank/vol', 4 * MiB)).equals(data)).toBe(true);
    // Survives export/import with the new layout.
    await mgr.poolExport('tank');
    await mgr.poolImport('tank', dir);
    expect((await readAll('tank/vol', 4 * MiB)).equals(data)).toBe(true);
    await mgr.poolAttach('tank', b, o, { force: true, wait: true });
    const rows = (await mgr.poolIostat(['tank'], { verbose: true }))[0]!.rows;
    expect(rows.map((r) => r.name)).toEqual(['tank', 'mirror-0', b, o]);
    expect(rows.find((r) => r.name === o)!.writeBytes).toBeGreaterThan(0);
  });

  it('pool list shows usable capacity of raidz (parity deflated)', async () => {
    const devs = [file(), file(), file(), file()];
    await mgr.poolCreate('tank', { groups: [{ type: 'raidz', nparity: 1, paths: devs }] });
    const [row] = await mgr.poolList(['tank']);
    const leafData = 64 * MiB - 4 * MiB - 512 * 1024;
    // About 3 of 4 devices' data areas (raidz1 of 4, with the 128K-block deflate ratio).
    expect(row!.size).toBeGreaterThan(2.5 * leafData);
    expect(row!.size).toBeLessThan(3.01 * leafData);
  });

  it('scrub pause survives export/import, scrub resumes from the bookmark, scrub -s cancels', async () => {
    process.env['STRATA_SCAN_RATE'] = String(1 * MiB);
    try {
      const [a, b] = [file(), file()];
      await mgr.poolCreate('tank', { groups: [{ type: 'mirror', paths: [a, b] }] });
      await mgr.create('tank/vol', { volsize: String(8 * MiB), blocksize: '16384' });
      await fill('tank/vol', 8 * MiB);
      await mgr.poolScrub('tank');
      let st = (await mgr.poolStatus('tank'))[0]!;
      for (let i = 0; i < 200 && st.scan!.examined < 1 * MiB; i++) {
        await new Promise((r) => setTimeout(r, 20));
        st = (await mgr.poolStatus('tank'))[0]!;
      }
      expect(st.scan!.state).toBe('scanning');
      await mgr.poolScrub('tank', { op: 'pause' });
      st = (await mgr.poolStatus('tank'))[0]!;
      expect(st.scan!.paused).toBe(true);
      const at = st.scan!.examined;
      expect(at).toBeGreaterThan(0);
      await mgr.poolExport('tank');
      await mgr.poolImport('tank', dir);
      st = (await mgr.poolStatus('tank'))[0]!;
      expect(st.scan!.state).toBe('scanning');
      expect(st.scan!.paused).toBe(true);
      expect(st.scan!.running).toBe(false);
      expect(st.scan!.examined).toBe(at);
      await mgr.poolScrub('tank');
      st = (await mgr.poolStatus('tank'))[0]!;
      expect(st.scan!.paused).toBe(false);
      expect(st.scan!.running).toBe(true);
      expect(st.scan!.examined).toBeGreaterThanOrEqual(at);
      await mgr.poolScrub('tank', { op: 'stop' });
      st = (await mgr.poolStatus('tank'))[0]!;
      expect(st.scan!.state).toBe('canceled');
      expect(st.scan!.running).toBe(false);
      await expect(mgr.poolScrub('tank', { op: 'pause' })).rejects.toThrow(/no active scrub/);
    } finally {
      delete process.env['STRATA_SCAN_RATE'];
    }
  });

  it('offline -t: the device is back after export/import and resilvers what it missed', async () => {
    const [a, b] = [file(), file()];
    await mgr.poolCreate('tank', { groups: [{ type: 'mirror', paths: [a, b] }] });
    await mgr.create('tank/vol', { volsize: String(4 * MiB), blocksize: '16384' });
    const data = await fill('tank/vol', 4 * MiB);
    await mgr.poolOffline('tank', b, { temporary: true });
    const late = await fill('tank/vol', 128 * 1024, 2 * MiB);
    late.copy(data, 2 * MiB);
    await mgr.poolExport('tank');
    await mgr.poolImport('tank', dir);
    await mgr.poolWait('tank');
    const st = (await mgr.poolStatus('tank'))[0]!;
    expect(st.state).toBe('ONLINE');
    expect(st.scan!.func).toBe('resilver');
    expect(st.scan!.state).toBe('finished');
    expect(st.scan!.repaired).toBeGreaterThanOrEqual(128 * 1024);
    expect(st.scan!.repaired).toBeLessThan(1 * MiB);
    await mgr.poolOffline('tank', a);
    expect((await readAll('tank/vol', 4 * MiB)).equals(data)).toBe(true);
    const leaves = (await mgr.poolStatus('tank'))[0]!.config.pool.children[0]!.children;
    expect(leaves.every((l) => l.cksum === 0)).toBe(true);
  });
});
