/**
 * Deep pipelines from a raw socket, sent in odd-sized pieces so headers
 * and payloads straddle socket reads: writes of every size class (small
 * ones batched per read, large ones read straight into their buffers),
 * then reads of every size class (small replies packed into the reply
 * slab, large ones queued by reference) whose replies interleave. Every
 * request is answered exactly once and every byte comes back.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawDevice } from '../../formats/raw/index.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import type { BlockDevice, BlockDeviceInfo, WriteOptions } from '../../src/device/block-device.js';
import { RawClient } from './raw-client.js';
import { pattern, requestHeader, serve, tempDir, type Served } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES = [512, 4 * KiB, 12 * KiB, 16 * KiB, 20 * KiB, 64 * KiB, 100 * KiB, 128 * KiB, 256 * KiB, MiB, 3 * MiB];

/** Deterministic pseudo-random bytes (differs per seed and position). */
function bytes(n: number, seed: number): Buffer {
  return pattern(n, (seed * 2654435761) >>> 0);
}

/** Send `stream` in pieces of varying size (1 byte .. 300 KiB), yielding now and then. */
async function sendInPieces(c: RawClient, stream: Buffer, seed: number): Promise<void> {
  const rnd = bytes(4096, seed);
  let pos = 0;
  for (let i = 0; pos < stream.length; i++) {
    const r = rnd[i % rnd.length]!;
    const n = r < 40 ? 1 + (r % 29) : r < 120 ? 1 + r * 37 : 1 + r * 1201;
    c.write(stream.subarray(pos, pos + n));
    pos += n;
    if (i % 16 === 15) await new Promise((res) => setImmediate(res));
  }
}

interface Region {
  offset: number;
  length: number;
  seed: number;
}

function regions(count: number): Region[] {
  const out: Region[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const length = SIZES[(i * 7) % SIZES.length]!;
    out.push({ offset, length, seed: i + 1 });
    offset += length + 512 * (i % 3);
  }
  return out;
}

async function roundTrip(port: number, name: string): Promise<void> {
  const rs = regions(60);
  const c = await RawClient.connect(port);
  try {
    await c.greet();
    await c.go(name);
    // Writes: all pipelined, disjoint ranges.
    await sendInPieces(c, Buffer.concat(rs.flatMap((r, i) => [requestHeader(1, i, r.offset, r.length), bytes(r.length, r.seed)])), 7);
    const acked = new Set<number>();
    for (let i = 0; i < rs.length; i++) {
      const rep = await c.simpleReply();
      expect(rep?.error).toBe(0);
      acked.add(rep!.handle);
    }
    expect(acked.size).toBe(rs.length);
    // Reads: all pipelined; replies come in any order, each followed by its data.
    await sendInPieces(c, Buffer.concat(rs.map((r, i) => requestHeader(0, 1000 + i, r.offset, r.length))), 11);
    const seen = new Set<number>();
    for (let i = 0; i < rs.length; i++) {
      const rep = await c.simpleReply();
      expect(rep?.error).toBe(0);
      const r = rs[rep!.handle - 1000]!;
      const data = await c.read(r.length);
      const want = createHash('sha256').update(bytes(r.length, r.seed)).digest('hex');
      expect(createHash('sha256').update(data!).digest('hex'), `read of ${r.length} at ${r.offset}`).toBe(want);
      seen.add(rep!.handle);
    }
    expect(seen.size).toBe(rs.length);
  } finally {
    c.destroy();
  }
}

/**
 * A device that keeps owned payloads by reference, as a pool volume does
 * (info.keepsPayload): its contents ARE the buffers it was handed, replayed
 * in order on read. If the server reused or refilled a payload buffer after
 * handing it over, reads would come back wrong.
 */
class KeeperDevice extends MemoryDevice {
  readonly kept: { offset: number; data: Buffer }[] = [];
  ownedWrites = 0;
  override info(): BlockDeviceInfo {
    return { ...super.info(), blockSize: 16 * KiB, keepsPayload: true };
  }
  override async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    if (opts?.owned) this.ownedWrites++;
    this.kept.push({ offset, data: opts?.owned ? data : Buffer.from(data) });
  }
  override async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    for (const k of this.kept) {
      const from = Math.max(offset, k.offset);
      const to = Math.min(offset + length, k.offset + k.data.length);
      if (from < to) k.data.copy(out, from - offset, from - k.offset, to - k.offset);
    }
    return out;
  }
}

describe('deep pipelines in odd-sized pieces', () => {
  let s: Served;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  const devices: BlockDevice[] = [];
  let keeper: KeeperDevice;

  beforeAll(async () => {
    tmp = await tempDir('nbd-pipeline');
    const mem = new MemoryDevice(128 * MiB);
    keeper = new KeeperDevice(128 * MiB);
    const inline = await RawDevice.create(path.join(tmp.dir, 'inline.raw'), 128 * MiB, { inlineIo: 'always' });
    const pooled = await RawDevice.create(path.join(tmp.dir, 'pooled.raw'), 128 * MiB, { inlineIo: 'never' });
    devices.push(mem, inline, pooled, keeper);
    s = await serve({
      exports: (['mem', 'inline', 'pooled', 'keeper'] as const).reduce(
        (o, name, i) => ({ ...o, [name]: { device: devices[i]! } }),
        {} as Record<string, { device: BlockDevice }>,
      ),
    });
  });
  afterAll(async () => {
    await s.server.close();
    for (const d of devices) await d.close();
    await tmp.cleanup();
  });

  for (const name of ['mem', 'inline', 'pooled']) {
    it(`${name}: every request answered once, every byte read back`, async () => {
      await roundTrip(s.port, name);
    });
  }

  it('keeper: payloads handed over (owned) are never reused by the server', async () => {
    await roundTrip(s.port, 'keeper');
    // Writes of a block (16 KiB) or more are handed over; smaller ones are not.
    const big = regions(60).filter((r) => r.length >= 16 * KiB).length;
    expect(keeper.ownedWrites).toBe(big);
  });
});
