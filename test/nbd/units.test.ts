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
import { err, StorageError, type ErrorCode } from '../../src/errors.js';
import { nbdErrno } from '../../src/nbd/errno.js';
import { BufferPool } from '../../src/nbd/buffer-pool.js';
import type { BlockDevice } from '../../src/device/block-device.js';
import { ok, run, serve } from './helpers.js';
import { RawClient } from './raw-client.js';

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

describe('error mapping', () => {
  it('maps StorageError codes to the NBD error values', () => {
    const want: Partial<Record<ErrorCode, number>> = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108, ENOENT: 5, EFAULT: 5 };
    for (const [code, v] of Object.entries(want)) expect(nbdErrno(new StorageError(code as ErrorCode, 'x')), code).toBe(v);
    expect(nbdErrno(new Error('a bug below us'))).toBe(5);
    expect(nbdErrno(undefined)).toBe(5);
  });

  it('device errors reach the client as NBD errors and the connection carries on', async () => {
    const m = new MemoryDevice(1 << 20);
    const failing: BlockDevice = {
      info: () => m.info(),
      read: async (o, l, i) => (o === 0 ? Promise.reject(err.io('checksum mismatch')) : m.read(o, l, i)),
      write: async () => Promise.reject(err.nospc('pool is full')),
      writeZeroes: async () => Promise.reject(err.notsup('no')),
      trim: (o, l) => m.trim(o, l),
      flush: async () => Promise.reject(new TypeError('a bug')),
      blockStatus: (o, l) => m.blockStatus(o, l),
      close: () => m.close(),
    };
    const s = await serve({ exports: { f: { device: failing } } });
    try {
      const c = await RawClient.connect(s.port);
      await c.greet();
      await c.go('f');
      c.request(0, 0, 512, 1);
      expect(await c.simpleReply()).toEqual({ handle: 1, error: 5 }); // no payload follows an error
      c.request(1, 0, 4, 2, 0, Buffer.from('abcd'));
      expect(await c.simpleReply()).toEqual({ handle: 2, error: 28 });
      c.request(3, 0, 0, 3);
      expect(await c.simpleReply()).toEqual({ handle: 3, error: 5 });
      c.request(0, 4096, 4, 4);
      expect(await c.simpleReply()).toEqual({ handle: 4, error: 0 });
      expect((await c.read(4))!.equals(Buffer.alloc(4))).toBe(true);
      c.destroy();
    } finally {
      await s.server.close();
    }
  });
});

describe('BufferPool', () => {
  it('reuses buffers by size class, holds at most its cap, and an idle pool shrinks to its idle size', () => {
    const pool = new BufferPool(8 * 65536, 2 * 65536);
    const bufs = Array.from({ length: 10 }, () => pool.get(60000));
    expect(bufs.every((b) => b.length === 65536)).toBe(true);
    for (const b of bufs) pool.put(b);
    expect(pool.pooledBytes).toBe(8 * 65536); // two over the cap went to the GC
    const again = pool.get(65536);
    expect(bufs.includes(again)).toBe(true);
    pool.trimIfIdle(); // something was taken since the last call: nothing dropped
    expect(pool.pooledBytes).toBe(7 * 65536);
    pool.trimIfIdle(); // idle since
    expect(pool.pooledBytes).toBe(2 * 65536);
    pool.put(Buffer.alloc(1000)); // not a size class: not kept
    expect(pool.pooledBytes).toBe(2 * 65536);
  });
});
