/**
 * Pieces without a peer: client address rules, the read-only and stats
 * filters, and a live export resolver (exports appear and disappear while
 * the server runs; release() follows every open).
 */
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { readOnlyView } from '../../src/device/read-only.js';
import { StatsDevice } from '../../src/device/stats.js';
import { checked } from '../../src/device/validate.js';
import { addressAllowed, parseCidr } from '../../src/nbd/cidr.js';
import type { NbdExport, NbdExportResolver } from '../../src/nbd/index.js';
import { ok, run, serve } from './helpers.js';

describe('client address rules', () => {
  it('matches IPv4, IPv6 and IPv4-mapped peers by prefix', () => {
    expect(addressAllowed('127.0.0.1', ['127.0.0.0/8'])).toBe(true);
    expect(addressAllowed('::ffff:127.0.0.1', ['127.0.0.0/8'])).toBe(true);
    expect(addressAllowed('10.1.2.3', ['127.0.0.0/8', '10.1.0.0/16'])).toBe(true);
    expect(addressAllowed('10.2.2.3', ['10.1.0.0/16'])).toBe(false);
    expect(addressAllowed('192.168.1.7', ['192.168.1.7'])).toBe(true);
    expect(addressAllowed('192.168.1.8', ['192.168.1.7'])).toBe(false);
    expect(addressAllowed('::1', ['::1/128'])).toBe(true);
    expect(addressAllowed('fd00::5', ['fd00::/8'])).toBe(true);
    expect(addressAllowed('fe80::1', ['fd00::/8'])).toBe(false);
    expect(addressAllowed('::1', ['127.0.0.0/8'])).toBe(false);
    expect(addressAllowed('anything', undefined)).toBe(true);
    expect(addressAllowed('1.2.3.4', [])).toBe(false);
  });
  it('rejects malformed rules loudly', () => {
    expect(() => parseCidr('300.1.1.1/8')).toThrow();
    expect(() => parseCidr('10.0.0.0/33')).toThrow();
    expect(() => parseCidr('::1/129')).toThrow();
  });
});

describe('device filters', () => {
  it('readOnlyView refuses changes and reports no trim/zero', async () => {
    const m = new MemoryDevice(1 << 20);
    await m.write(0, Buffer.from('abc'));
    const ro = checked(readOnlyView(m));
    expect(ro.info()).toMatchObject({ readOnly: true, canTrim: false, canZero: false, canFastZero: false });
    await expect(ro.write(0, Buffer.from('x'))).rejects.toMatchObject({ code: 'EPERM' });
    await expect(readOnlyView(m).trim(0, 512)).rejects.toMatchObject({ code: 'EPERM' });
    await expect(readOnlyView(m).writeZeroes(0, 512)).rejects.toMatchObject({ code: 'EPERM' });
    expect((await ro.read(0, 3)).toString()).toBe('abc');
    await readOnlyView(m).close(); // must not close the shared device
    expect((await m.read(0, 3)).toString()).toBe('abc');
  });

  it('StatsDevice counts ops, bytes, errors and latencies', async () => {
    const st = new StatsDevice(checked(new MemoryDevice(1 << 20)));
    await st.write(0, Buffer.alloc(4096));
    await st.read(0, 1000);
    await st.flush();
    await expect(st.read(1 << 20, 1)).rejects.toMatchObject({ code: 'EINVAL' });
    const s = st.snapshot();
    expect(s.ops).toBe(4);
    expect(s.errors).toBe(1);
    expect(s.bytesWritten).toBe(4096);
    expect(s.bytesRead).toBe(1000);
    expect(s.byOp.read).toMatchObject({ ops: 2, errors: 1 });
    expect(s.byOp.read.latencyUs.reduce((a, b) => a + b, 0)).toBe(2);
    // Snapshots are copies.
    s.byOp.read.latencyUs[0] = 999;
    expect(st.snapshot().byOp.read.latencyUs[0]).not.toBe(999);
  });
});

describe('live export resolver', () => {
  it('serves exports added after start, refuses removed ones, and releases every open', async () => {
    const live = new Map<string, NbdExport>();
    let opens = 0;
    let releases = 0;
    const resolver: NbdExportResolver = {
      list: () => [...live.keys()].map((name) => ({ name })),
      open: async (name) => {
        const e = live.get(name);
        if (!e) return null;
        opens++;
        // A fresh wrapper per open, as the daemon does: counters must still add up per export name.
        return { ...e, device: checked(e.device), release: () => void releases++ };
      },
    };
    const s = await serve({ exports: resolver });
    try {
      expect((await run('qemu-img', ['info', s.uri('tank/new')])).code).not.toBe(0);
      const dev = new MemoryDevice(4 << 20);
      live.set('tank/new', { device: dev });
      await ok('qemu-io', ['-f', 'raw', '-c', 'write -P 0x21 0 64k', s.uri('tank/new')]);
      expect((await dev.read(0, 2)).toString()).toBe('!!');
      await ok('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 64k 64k', s.uri('tank/new')]);
      expect(s.server.stats()['tank/new']!.byOp.write.ops).toBe(2);
      expect(s.server.stats()['tank/new']!.bytesWritten).toBe(128 * 1024);
      const list = JSON.parse(await ok('nbdinfo', ['--list', '--json', s.uri('')]));
      expect(list.exports.map((e: { 'export-name': string }) => e['export-name'])).toEqual(['tank/new']);
      live.delete('tank/new');
      expect((await run('qemu-img', ['info', s.uri('tank/new')])).code).not.toBe(0);
      for (let i = 0; i < 50 && s.server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(opens).toBeGreaterThan(0);
      expect(releases).toBe(opens);
    } finally {
      await s.server.close();
    }
  });
});
