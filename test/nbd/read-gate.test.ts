/**
 * ReadGate: a connection's large READs stay within READ_AHEAD (4 MiB) of
 * what its socket has written, in arrival order; small READs never wait.
 * The transmission cases drive a Transmission over a Duplex whose write
 * callbacks the test holds, so "the socket has written it" is exact.
 */
import { describe, expect, it } from 'vitest';
import { Duplex } from 'node:stream';
import { ReadGate } from '../../src/nbd/read-gate.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import * as C from '../../src/nbd/constants.js';
import { pattern, requestHeader as request, startTransmission } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const tick = () => new Promise<void>((r) => setImmediate(r));
const ticks = async (n = 8) => {
  for (let i = 0; i < n; i++) await tick();
};

describe('ReadGate', () => {
  it('lets reads through up to the limit, then in arrival order as bytes come back', async () => {
    const g = new ReadGate(4 * MiB);
    expect(g.tryTake(MiB)).toBe(true);
    expect(g.tryTake(3 * MiB)).toBe(true);
    expect(g.tryTake(MiB)).toBe(false);
    const order: string[] = [];
    const big = g.take(2 * MiB).then(() => order.push('big'));
    const small = g.take(256 * KiB).then(() => order.push('small'));
    // Room for the small one now, but the big one arrived first: nobody overtakes.
    g.give(MiB);
    await ticks(2);
    expect(order).toEqual([]);
    expect(g.tryTake(256 * KiB)).toBe(false);
    g.give(3 * MiB);
    await Promise.all([big, small]);
    expect(order).toEqual(['big', 'small']);
    expect(g.bytes).toBe(2 * MiB + 256 * KiB);
  });

  it('a read larger than the whole limit goes through once nothing else is taken', async () => {
    const g = new ReadGate(4 * MiB);
    expect(g.tryTake(8 * MiB)).toBe(true);
    let done = false;
    const next = g.take(32 * MiB).then(() => (done = true));
    await ticks(2);
    expect(done).toBe(false);
    g.give(8 * MiB);
    await next;
    expect(g.bytes).toBe(32 * MiB);
  });
});

/**
 * A Transmission over a Duplex that writes nothing until the test releases it;
 * `started()` counts the reads that reached the device.
 */
function heldConnection(device: MemoryDevice) {
  let started = 0;
  const read = device.read.bind(device);
  device.read = (offset, length, into) => {
    started++;
    return read(offset, length, into);
  };
  const held: (() => void)[] = [];
  const out: Buffer[] = [];
  const stream = new Duplex({
    read() {},
    writev(chunks, cb) {
      for (const c of chunks) out.push(Buffer.from(c.chunk as Buffer));
      held.push(() => cb());
    },
  });
  const t = startTransmission(stream, device, false);
  /** Let the socket finish everything handed to it so far. */
  const release = () => held.splice(0).forEach((f) => f());
  return { t, stream, out, release, started: () => started };
}

/** Simple replies in `bytes`, each followed by `len` data bytes: handle -> data. */
function replies(bytes: Buffer, len: number): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (let at = 0; at + 16 + len <= bytes.length; at += 16 + len) {
    expect(bytes.readUInt32BE(at)).toBe(C.SIMPLE_REPLY_MAGIC);
    expect(bytes.readUInt32BE(at + 4)).toBe(0);
    m.set(bytes.readUInt32BE(at + 12), bytes.subarray(at + 16, at + 16 + len));
  }
  return m;
}

describe('Transmission: large READs wait for the socket', () => {
  it('16 pipelined 1 MiB reads: at most 4 between device and socket, every byte right', async () => {
    const dev = new MemoryDevice(32 * MiB);
    const data = pattern(32 * MiB, 7);
    await dev.write(0, data);
    const c = heldConnection(dev);
    c.stream.push(Buffer.concat(Array.from({ length: 16 }, (_, i) => request(C.CMD_READ, i, i * 2 * MiB, MiB))));
    await ticks();
    expect(c.started()).toBe(4);
    // Each time the socket catches up, the next reads start, never more than 4 ahead.
    let written = 0;
    for (let round = 0; round < 40 && written < 16; round++) {
      c.release();
      await ticks();
      written = replies(Buffer.concat(c.out), MiB).size;
      expect(c.started() - written).toBeLessThanOrEqual(4);
    }
    const got = replies(Buffer.concat(c.out), MiB);
    expect(got.size).toBe(16);
    for (const [h, d] of got) expect(d.equals(data.subarray(h * 2 * MiB, h * 2 * MiB + MiB)), `reply ${h}`).toBe(true);
    c.t.destroy();
  });

  it('reads still waiting when the client goes never reach the device', async () => {
    const dev = new MemoryDevice(16 * MiB);
    const c = heldConnection(dev);
    c.stream.push(Buffer.concat(Array.from({ length: 8 }, (_, i) => request(C.CMD_READ, i, i * MiB, MiB))));
    await ticks();
    expect(c.started()).toBe(4);
    c.stream.destroy();
    await ticks();
    // The socket fails what it held: the gate opens, and the 4 waiting reads find the client gone.
    c.release();
    await ticks();
    expect(c.started()).toBe(4);
  });

  it('small reads do not wait behind large ones', async () => {
    const dev = new MemoryDevice(16 * MiB);
    const c = heldConnection(dev);
    const reqs = [...Array.from({ length: 8 }, (_, i) => request(C.CMD_READ, i, i * MiB, MiB)), ...Array.from({ length: 32 }, (_, i) => request(C.CMD_READ, 100 + i, i * 4 * KiB, 4 * KiB))];
    c.stream.push(Buffer.concat(reqs));
    await ticks();
    expect(c.started()).toBe(4 + 32);
    for (let round = 0; round < 40 && c.started() < 40; round++) {
      c.release();
      await ticks();
    }
    expect(c.started()).toBe(40);
    c.t.destroy();
  });
});
