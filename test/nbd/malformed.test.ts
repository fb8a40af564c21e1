/**
 * Garbage at every stage, from raw sockets: each bad client is refused or
 * closed on its own, and afterwards the server still serves correct data
 * to a well-behaved client (qemu-io). Also: graceful shutdown semantics.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockDevice } from '../../src/device/block-device.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { RawClient } from './raw-client.js';
import { ok, serve, type Served } from './helpers.js';

const MiB = 1024 * 1024;
const REP_ACK = 1;
const REP_SERVER = 2;
const ERR_UNSUP = 0x80000001;
const ERR_INVALID = 0x80000003;
const ERR_TOO_BIG = 0x80000009;
const EINVAL = 22;

describe('malformed input', () => {
  let s: Served;
  const dev = new MemoryDevice(16 * MiB);

  beforeAll(async () => {
    await dev.write(0, Buffer.alloc(2 * MiB, 0x3c));
    s = await serve({ exports: { disk: { device: dev }, other: { device: new MemoryDevice(MiB) } }, maxRequest: 4 * MiB, handshakeTimeoutMs: 5000 });
  });
  afterAll(() => s.server.close());

  const client = () => RawClient.connect(s.port);

  it('garbage instead of client flags closes the connection', async () => {
    const c = await client();
    expect(await c.read(18)).not.toBeNull();
    c.write(randomBytes(64));
    await c.done;
    expect(c.closed).toBe(true);
  });

  it('plain (non-fixed) newstyle clients and unknown client flags are refused', async () => {
    for (const flags of [0, 2, 0x80000001]) {
      const c = await client();
      await c.greet(flags);
      await c.done;
      expect(c.closed, `flags ${flags}`).toBe(true);
    }
  });

  it('a bad option magic closes the connection', async () => {
    const c = await client();
    await c.greet();
    c.option(3, Buffer.alloc(0), 'IHAVEOPS');
    expect(await c.optionReply()).toBeNull();
  });

  it('unknown options get NBD_REP_ERR_UNSUP and haggling continues', async () => {
    const c = await client();
    await c.greet();
    c.option(0x1234, randomBytes(10));
    expect(await c.optionReply()).toMatchObject({ option: 0x1234, type: ERR_UNSUP });
    // An oversized unknown option is read and discarded, not buffered, and still answered.
    c.option(0x4321, randomBytes(2 * MiB));
    expect(await c.optionReply()).toMatchObject({ option: 0x4321, type: ERR_UNSUP });
    c.option(3, randomBytes(200 * 1024)); // LIST with too much data
    expect(await c.optionReply()).toMatchObject({ option: 3, type: ERR_TOO_BIG });
    c.option(3);
    const names: string[] = [];
    for (let r = await c.optionReply(); r && r.type === REP_SERVER; r = await c.optionReply()) names.push(r.data.subarray(4).toString());
    expect(names).toEqual(['disk', 'other']);
    c.option(2); // ABORT
    expect(await c.optionReply()).toMatchObject({ option: 2, type: REP_ACK });
    await c.done;
  });

  it('malformed option payloads get NBD_REP_ERR_INVALID', async () => {
    const c = await client();
    await c.greet();
    const overrun = Buffer.alloc(10);
    overrun.writeUInt32BE(1000, 0); // name length beyond the option
    c.option(7, overrun);
    expect(await c.optionReply()).toMatchObject({ type: ERR_INVALID });
    c.option(8, Buffer.from('x')); // STRUCTURED_REPLY takes no data
    expect(await c.optionReply()).toMatchObject({ type: ERR_INVALID });
    c.option(10, Buffer.alloc(8)); // SET_META_CONTEXT before structured replies
    expect(await c.optionReply()).toMatchObject({ type: ERR_INVALID });
    const nul = Buffer.from([0, 0, 0, 2, 0x61, 0x00, 0, 0]); // NUL inside the export name
    c.option(6, nul);
    expect(await c.optionReply()).toMatchObject({ type: ERR_INVALID });
    c.destroy();
  });

  it('an absurd option length, an unknown EXPORT_NAME and a truncated handshake close only that client', async () => {
    const a = await client();
    await a.greet();
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(1, 8);
    h.writeUInt32BE(0xffffffff, 12);
    a.write(h);
    await a.done;
    const b = await client();
    await b.greet();
    b.option(1, Buffer.from('no-such-export'));
    await b.done;
    const c = await client();
    expect(await c.read(18)).not.toBeNull();
    c.write(Buffer.from([0, 0]));
    c.end();
    await c.done;
    expect([a.closed, b.closed, c.closed]).toEqual([true, true, true]);
  });

  it('in transmission: unknown commands and flags get EINVAL, oversized writes are discarded with EINVAL', async () => {
    const c = await client();
    await c.greet();
    await c.go('disk');
    c.request(99, 0, 512, 1);
    expect(await c.simpleReply()).toEqual({ handle: 1, error: EINVAL });
    c.request(0, 0, 512, 2, 0x40); // READ with an undefined flag
    expect(await c.simpleReply()).toEqual({ handle: 2, error: EINVAL });
    // 8 MiB write against a 4 MiB maximum: the payload streams in and is dropped.
    c.request(1, 0, 8 * MiB, 3, 0, Buffer.alloc(8 * MiB, 0xee));
    expect(await c.simpleReply()).toEqual({ handle: 3, error: EINVAL });
    c.request(0, 4096, 8, 4);
    expect(await c.simpleReply()).toEqual({ handle: 4, error: 0 });
    expect((await c.read(8))!.equals(Buffer.alloc(8, 0x3c))).toBe(true);
    expect((await dev.read(0, 8)).equals(Buffer.alloc(8, 0x3c))).toBe(true);
    c.request(0, 0, 8, 5, 0, undefined, 0xdeadbeef); // bad request magic
    expect(await c.simpleReply()).toBeNull();
  });

  it('a client that disconnects in the middle of a write payload does not harm the device', async () => {
    const c = await client();
    await c.greet();
    await c.go('disk');
    c.request(1, MiB, MiB, 1, 0, Buffer.alloc(1000, 0xaa)); // 1000 of 1 MiB bytes, then gone
    c.destroy();
    await c.done;
    const d = await client();
    await d.greet();
    await d.go('disk');
    d.write(randomBytes(300)); // garbage requests
    await d.done;
    expect((await dev.read(MiB, 1000)).equals(Buffer.alloc(1000, 0x3c))).toBe(true);
  });

  it('NBD_OPT_EXPORT_NAME ends haggling with 10 bytes under NO_ZEROES, 134 without', async () => {
    for (const [flags, len] of [[3, 10], [1, 134]] as const) {
      const c = await client();
      await c.greet(flags);
      c.option(1, Buffer.from('disk'));
      const info = (await c.read(len))!;
      expect(info.readBigUInt64BE(0)).toBe(16n * BigInt(MiB));
      expect(info.readUInt16BE(8) & 1).toBe(1); // HAS_FLAGS
      if (len === 134) expect(info.subarray(10).every((b) => b === 0)).toBe(true);
      c.request(0, 0, 4, 7);
      expect(await c.simpleReply()).toEqual({ handle: 7, error: 0 });
      expect((await c.read(4))!.equals(Buffer.alloc(4, 0x3c))).toBe(true);
      c.request(2, 0, 0, 8); // DISC
      await c.done;
    }
  });

  it('a meta context selected for one export is not active on another', async () => {
    const c = await client();
    await c.greet();
    c.option(8);
    expect(await c.optionReply()).toMatchObject({ type: REP_ACK });
    const name = Buffer.from('disk');
    const q = Buffer.from('base:allocation');
    const d = Buffer.alloc(4 + name.length + 4 + 4 + q.length);
    d.writeUInt32BE(name.length, 0);
    name.copy(d, 4);
    d.writeUInt32BE(1, 4 + name.length);
    d.writeUInt32BE(q.length, 8 + name.length);
    q.copy(d, 12 + name.length);
    c.option(10, d);
    expect(await c.optionReply()).toMatchObject({ type: 4 }); // NBD_REP_META_CONTEXT
    expect(await c.optionReply()).toMatchObject({ type: REP_ACK });
    await c.go('other');
    c.request(7, 0, 4096, 9); // BLOCK_STATUS
    const h = (await c.read(20))!;
    expect(h.readUInt32BE(0)).toBe(0x668e33ef);
    expect(h.readUInt16BE(6)).toBe(0x8001); // NBD_REPLY_TYPE_ERROR
    const payload = (await c.read(h.readUInt32BE(16)))!;
    expect(payload.readUInt32BE(0)).toBe(EINVAL);
    c.destroy();
  });

  it('after all of that, a real client reads and writes correct data', async () => {
    await ok('qemu-io', ['-f', 'raw', '-c', 'read -P 0x3c 0 2M', '-c', 'write -P 0x5d 4M 1M', '-c', 'read -P 0x5d 4M 1M', s.uri('disk')]);
    for (let i = 0; i < 50 && s.server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.server.connectionCount).toBe(0);
  });
});

describe('bounded memory', () => {
  it('stops reading a client whose requests exceed maxInflightBytes', async () => {
    const inner = new MemoryDevice(256 * MiB);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const stuck: BlockDevice = {
      ...inner,
      info: () => inner.info(),
      read: (o, l, i) => inner.read(o, l, i),
      write: async (o, d) => {
        calls++;
        await gate;
        await inner.write(o, d);
      },
      writeZeroes: (o, l, opts) => inner.writeZeroes(o, l, opts),
      trim: (o, l) => inner.trim(o, l),
      flush: () => inner.flush(),
      blockStatus: (o, l) => inner.blockStatus(o, l),
      close: () => inner.close(),
    };
    // The cap is never below maxRequest, so both are set.
    const s = await serve({ exports: { stuck: { device: stuck } }, maxInflightBytes: 16 * MiB, maxRequest: 4 * MiB });
    try {
      const c = await RawClient.connect(s.port);
      await c.greet();
      await c.go('stuck');
      const payload = Buffer.alloc(MiB, 0x11);
      for (let i = 0; i < 100; i++) c.request(1, i * MiB, MiB, i, 0, payload);
      // Wait until the server has taken all it should; a slow machine only makes this smaller.
      for (let i = 0; i < 200 && calls < 15; i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toBeGreaterThanOrEqual(15); // the 16th header is charged, then reading stops before its payload
      expect(calls).toBeLessThanOrEqual(18); // 16 MiB of payloads plus the one being parsed
      release();
      const seen = new Set<number>();
      for (let i = 0; i < 100; i++) {
        const r = await c.simpleReply();
        expect(r?.error).toBe(0);
        seen.add(r!.handle);
      }
      expect(seen.size).toBe(100);
      expect(calls).toBe(100);
      c.destroy();
    } finally {
      release(); // a failed assertion must not leave close() waiting on the gated writes
      await s.server.close();
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes running requests, answers new ones with ESHUTDOWN, flushes, then closes', async () => {
    const inner = new MemoryDevice(MiB);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const writing = new Promise<void>((r) => (entered = r));
    const events: string[] = [];
    const slow: BlockDevice = {
      info: () => inner.info(),
      read: (o, l, i) => inner.read(o, l, i),
      write: async (o, d, opts) => {
        entered();
        await gate;
        await inner.write(o, d, opts);
        events.push('write');
      },
      writeZeroes: (o, l, opts) => inner.writeZeroes(o, l, opts),
      trim: (o, l) => inner.trim(o, l),
      flush: async () => void events.push('flush'),
      blockStatus: (o, l) => inner.blockStatus(o, l),
      close: () => inner.close(),
    };
    const s = await serve({ exports: { slow: { device: slow } } });
    const c = await RawClient.connect(s.port);
    await c.greet();
    await c.go('slow');
    c.request(1, 0, 4, 1, 0, Buffer.from('data'));
    await writing;
    const closed = s.server.close();
    c.request(0, 0, 4, 2);
    expect(await c.simpleReply()).toEqual({ handle: 2, error: 108 }); // ESHUTDOWN
    release();
    expect(await c.simpleReply()).toEqual({ handle: 1, error: 0 });
    await closed;
    await c.done;
    expect(events).toEqual(['write', 'flush']);
    expect((await inner.read(0, 4)).toString()).toBe('data');
    // No new connections once closed.
    await expect(RawClient.connect(s.port)).rejects.toThrow();
  });
});
