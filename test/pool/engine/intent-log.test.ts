/**
 * Flushes go through the intent log: a "crash" right after a flush (the
 * device file copied while the pool is open, nothing more synced) imports
 * with every flushed write replayed, for every block size, including
 * records larger than the log's first block.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { LEAF_DATA_START } from '../../../src/pool/vdev/types.js';
import { MiB, newPool, readAll, tempDir } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('intent log replay', () => {
  for (const bs of ['4K', '16K', '128K']) {
    it(`flushed writes survive a crash before the txg commits (volblocksize ${bs})`, async () => {
      const { dir, cleanup } = await tempDir();
      cleanups.push(cleanup);
      const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
      await mgr.create('tank/v', { volsize: '8M', blocksize: bs, sparse: true });
      const { volume } = await mgr.openVolume('tank/v');
      const model = Buffer.alloc(8 * MiB);
      const base = randomBytes(8 * MiB);
      await volume.write(0, base);
      base.copy(model);
      await pool.txg.syncNow();
      const synced = pool.txg.synced;
      // Small and large writes, a zero and a trim, each flushed through the log.
      for (const [o, n] of [[5, 100], [131072, 131072], [1 << 20, 300000], [4 << 20, 1]] as const) {
        const d = randomBytes(n);
        await volume.write(o, d);
        d.copy(model, o);
        await volume.flush();
      }
      await volume.writeZeroes(2 << 20, 70000);
      model.fill(0, 2 << 20, (2 << 20) + 70000);
      await volume.trim(3 << 20, 2 << 20);
      model.fill(0, 3 << 20, 5 << 20);
      await volume.flush();
      expect(pool.txg.synced, 'the flushes must not have needed a txg').toBe(synced);
      // Crash: take the device as it is now.
      const crashDir = join(dir, 'crash');
      mkdirSync(crashDir);
      copyFileSync(join(dir, 'd1.img'), join(crashDir, 'd1.img'));
      const other = new PoolManager(join(dir, 'home2'), { txgTimeoutMs: 60_000 });
      await other.poolImport('tank', crashDir);
      const { volume: v2 } = await other.openVolume('tank/v');
      expect((await readAll(v2)).equals(model)).toBe(true);
      await other.close();
      await mgr.close();
    });
  }
  it('a commit cut short by a crash replays nothing of it (never half a block, never part of a write)', async () => {
    const { dir, cleanup } = await tempDir();
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 64 * MiB });
    const bs = 128 * 1024;
    await mgr.create('tank/v', { volsize: '4M', blocksize: '128K', sparse: true });
    const { volume } = await mgr.openVolume('tank/v');
    const old = randomBytes(4 * MiB);
    await volume.write(0, old);
    await pool.txg.syncNow();
    const neu = randomBytes(12 * bs);
    await volume.write(0, neu); // one commit of 12 block-sized records: several log blocks
    await volume.flush();
    const chain = (pool.zil as unknown as { chain: { dva: { offset: number }; psize: number }[] }).chain;
    expect(chain.length).toBeGreaterThanOrEqual(2);
    for (let lose = 0; lose < chain.length; lose++) {
      // Crash where every log block but one reached the disk: the chain ends there.
      const crashDir = join(dir, `crash${lose}`);
      mkdirSync(crashDir);
      const dev = join(crashDir, 'd1.img');
      copyFileSync(join(dir, 'd1.img'), dev);
      const fh = await open(dev, 'r+');
      await fh.write(Buffer.alloc(chain[lose]!.psize), 0, chain[lose]!.psize, LEAF_DATA_START + chain[lose]!.dva.offset);
      await fh.close();
      const other = new PoolManager(join(dir, `home${lose}`), { txgTimeoutMs: 60_000 });
      await other.poolImport('tank', crashDir);
      const { volume: v2 } = await other.openVolume('tank/v');
      const got = await readAll(v2);
      for (let b = 0; b < 32; b++) {
        const blk = got.subarray(b * bs, (b + 1) * bs);
        const isOld = blk.equals(old.subarray(b * bs, (b + 1) * bs));
        const isNew = b < 12 && blk.equals(neu.subarray(b * bs, (b + 1) * bs));
        expect(isOld || isNew, `lost log block ${lose}: volume block ${b} is torn`).toBe(true);
      }
      // Commits are atomic (log-block.ts): a flush cut short replays none of its write.
      expect(got.equals(old), `lost log block ${lose}: part of an unacknowledged commit was replayed`).toBe(true);
      await other.close();
    }
    await mgr.close();
  });
});
