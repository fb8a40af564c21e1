/**
 * The NBD sparse READ path returned its pooled buffer to the BufferPool as
 * soon as ONE extent read failed (Promise.all), while the other extent reads still
 * targeted it (found in review). Since a08cb60 an owned WRITE payload comes from that same pool and is
 * lent to the pool volume until its txg syncs: the late read then lands in the
 * payload the volume keeps as dirty blocks, and the txg writes the read's bytes.
 *
 * Device: a real pool volume, wrapped so that the read of extent [0, 32K) fails
 * with EIO (a damaged block) and the read of [64K, 128K) waits for a gate first
 * (a slow device), then runs the volume's real read into the caller's buffer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Duplex } from 'node:stream';
import * as C from '../../src/nbd/constants.js';
import { err } from '../../src/errors.js';
import type { BlockDevice } from '../../src/device/block-device.js';
import { MiB, newPool, tempDir } from '../pool/engine/helpers.js';
import { requestHeader, startTransmission } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
const KiB = 1024;

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('NBD sparse read vs lent payloads', () => {
  it('a failed sparse read does not pool its buffer while a sibling read still fills it', async () => {
    const { dir, cleanup } = await tempDir('strata-nbd8-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
    await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    // What the slow read will copy out: block data at [64K, 128K) of the volume.
    await volume.write(64 * KiB, Buffer.alloc(64 * KiB, 0xab));
    await pool.txg.syncNow();

    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let writes = 0;
    const dev: BlockDevice = {
      info: () => volume.info(),
      read: async (offset, length, into) => {
        if (offset === 0) throw err.io('unrecoverable read error (damaged block)');
        if (offset === 64 * KiB) await gate;
        return volume.read(offset, length, into);
      },
      write: (offset, data, opts) => {
        writes++;
        return volume.write(offset, data, opts);
      },
      writeZeroes: (o, l, opts) => volume.writeZeroes(o, l, opts),
      trim: (o, l, opts) => volume.trim(o, l, opts),
      flush: () => volume.flush(),
      // [0,32K) data, [32K,64K) zero, [64K,128K) data: the sparse path reads two extents.
      blockStatus: async (offset, length) => [
        { offset, length: 32 * KiB, hole: false, zero: false },
        { offset: offset + 32 * KiB, length: 32 * KiB, hole: true, zero: true },
        { offset: offset + 64 * KiB, length: length - 64 * KiB, hole: false, zero: false },
      ],
      close: async () => {},
    };
    const stream = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
    const t = startTransmission(stream, dev, true);
    // 1. A 128K structured READ (sparse path): extent [0,32K) fails at once, [64K,128K) waits.
    stream.push(requestHeader(C.CMD_READ, 1, 0, 128 * KiB));
    for (let i = 0; i < 5; i++) await tick();
    // 2. A 128K WRITE at 1M whose payload arrives in two chunks: assembled in a pooled buffer,
    //    owned, lent to the volume until its txg syncs.
    const payload = Buffer.alloc(128 * KiB, 0x11);
    stream.push(Buffer.concat([requestHeader(C.CMD_WRITE, 2, MiB, 128 * KiB), payload.subarray(0, 1000)]));
    stream.push(payload.subarray(1000));
    for (let i = 0; i < 5; i++) await tick();
    expect(writes).toBe(1);
    // 3. The slow extent read completes now: volume.read copies into its `into`.
    openGate();
    for (let i = 0; i < 5; i++) await tick();
    await pool.txg.syncNow();
    pool.arc.clear();
    const got = await volume.read(MiB, 128 * KiB);
    const bad = got.findIndex((x) => x !== 0x11);
    expect(bad, `first wrong byte of the written range (0xab: the read's bytes)`).toBe(-1);
    t.destroy();
    await mgr.close();
  });
});
