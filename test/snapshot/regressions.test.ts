/**
 * Minimal reproductions of bugs the model test (test/pool/snapshots/
 * model.test.ts) found in the cow and row strategies, one case each.
 */
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';
import { newPool, tempDir } from '../pool/engine/helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tick = () => new Promise((r) => setImmediate(r));

const KiB = 1024;
const MiB = 1024 * KiB;

async function withPool(fn: (mgr: PoolManager) => Promise<void>, opts: { arcMaxBytes?: number } = {}): Promise<void> {
  const { dir, cleanup } = await tempDir('strata-stratbug-');
  try {
    const { mgr } = await newPool(dir, opts);
    try {
      await fn(mgr);
    } finally {
      await mgr.close();
    }
  } finally {
    await cleanup();
  }
}

async function code(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

async function write(mgr: PoolManager, name: string, off: number, data: Buffer): Promise<void> {
  const { volume, release } = await mgr.openVolume(name);
  try {
    await volume.write(off, data);
    await volume.flush();
  } finally {
    release();
  }
}

async function read(mgr: PoolManager, name: string, off: number, len: number): Promise<{ data: Buffer; size: number }> {
  const { volume, release } = await mgr.openVolume(name);
  try {
    return { data: await volume.read(off, len), size: volume.info().size };
  } finally {
    release();
  }
}

describe.each(['native', 'cow', 'row'] as const)('snapmode=%s', (mode) => {
  it('rollback -r refuses (EBUSY) when a later snapshot is held, and destroys nothing', async () => {
    // Was: cow and row rollback merged/dropped the held snapshot (no hold check).
    await withPool(async (mgr) => {
      await mgr.create('tank/v', { volsize: String(MiB), sparse: true, props: { snapmode: mode } });
      await mgr.snapshot(['tank/v@a']);
      await write(mgr, 'tank/v', 0, Buffer.alloc(64 * KiB, 1));
      await mgr.snapshot(['tank/v@b']);
      await mgr.hold('keep', ['tank/v@b']);
      expect(await code(mgr.rollback('tank/v@a', { recursive: true }))).toBe('EBUSY');
      const pool = await mgr.pool('tank');
      expect(pool.dir.get('tank/v').snapshots.map((s) => s.name)).toEqual(['a', 'b']);
      expect((await read(mgr, 'tank/v', 0, 4)).data).toEqual(Buffer.alloc(4, 1));
    });
  });

  it('promote of a volume that is not a clone is EINVAL', async () => {
    // Was: row answered ENOTSUP ("row clones ... by reference") for any volume.
    await withPool(async (mgr) => {
      await mgr.create('tank/v', { volsize: String(MiB), sparse: true, props: { snapmode: mode } });
      expect(await code(mgr.promote('tank/v'))).toBe('EINVAL');
    });
  });
});

describe.each(['native', 'row'] as const)('snapmode=%s clones', (mode) => {
  it('a clone shrunk then grown reads zeroes past the cut (row: refused below the origin size)', async () => {
    // Was (row): the origin's blocks past the cut showed through again after the grow.
    await withPool(async (mgr) => {
      await mgr.create('tank/v', { volsize: String(MiB), sparse: true, props: { snapmode: mode } });
      await write(mgr, 'tank/v', 0, Buffer.alloc(MiB, 7));
      await mgr.snapshot(['tank/v@a']);
      await mgr.clone('tank/v@a', ['tank/c']);
      const shrink = await code(mgr.set('tank/c', { volsize: String(MiB / 2) }));
      expect(shrink).toBe(mode === 'row' ? 'ENOTSUP' : null);
      await mgr.set('tank/c', { volsize: String(2 * MiB) });
      const { data, size } = await read(mgr, 'tank/c', MiB / 2, MiB);
      expect(size).toBe(2 * MiB);
      // Native: zeroes past the cut; row (no cut): the origin's data up to its size, zeroes beyond.
      const want = Buffer.alloc(MiB, 0);
      if (mode === 'row') want.fill(7, 0, MiB / 2);
      expect(data.equals(want)).toBe(true);
    });
  });

  it('rollback --to-origin restores the origin snapshot size', async () => {
    // Was (row): the reset kept the clone's current size.
    await withPool(async (mgr) => {
      await mgr.create('tank/v', { volsize: String(MiB), sparse: true, props: { snapmode: mode } });
      await write(mgr, 'tank/v', 0, Buffer.alloc(MiB, 7));
      await mgr.snapshot(['tank/v@a']);
      await mgr.clone('tank/v@a', ['tank/c']);
      await mgr.set('tank/c', { volsize: String(2 * MiB) });
      await write(mgr, 'tank/c', MiB + 4096, Buffer.alloc(4096, 9));
      await mgr.rollbackToOrigin('tank/c');
      const { data, size } = await read(mgr, 'tank/c', 0, MiB);
      expect(size).toBe(MiB);
      expect(data.equals(Buffer.alloc(MiB, 7))).toBe(true);
      expect((await mgr.datasets(['tank/c'], false))[0]!.volsize).toBe(MiB);
      // Grown again: the old writes past the origin's size are gone.
      await mgr.set('tank/c', { volsize: String(2 * MiB) });
      expect((await read(mgr, 'tank/c', MiB, MiB)).data.equals(Buffer.alloc(MiB))).toBe(true);
    });
  });
});

describe.each(['cow', 'row'] as const)('snapmode=%s destroy -n', (mode) => {
  // Was: reclaimOf (src/pool/dataset/snapshots.ts) counted dead lists only, which cow and row
  // snapshots do not have, so `destroy -n` said 0 bytes (now src/snapshot/index.ts reclaimAll).
  it('reports the bytes the destroy frees', async () => {
    await withPool(async (mgr) => {
      await mgr.create('tank/v', { volsize: String(MiB), sparse: true, props: { snapmode: mode, compression: 'off' } });
      await write(mgr, 'tank/v', 0, Buffer.alloc(MiB, 1));
      await mgr.snapshot(['tank/v@a']);
      await write(mgr, 'tank/v', 0, Buffer.alloc(MiB / 2, 2));
      await mgr.snapshot(['tank/v@b']);
      await write(mgr, 'tank/v', 0, Buffer.alloc(MiB / 4, 3));
      const pool = await mgr.pool('tank');
      await pool.txg.syncNow();
      const dry = await mgr.destroySnapshots('tank/v@a', { dryRun: true });
      const before = pool.logged.reduce((n, a) => n + a.allocatedBytes(), 0);
      await mgr.destroySnapshots('tank/v@a');
      await pool.txg.syncNow();
      const freed = before - pool.logged.reduce((n, a) => n + a.allocatedBytes(), 0);
      expect(freed).toBeGreaterThan(0);
      // Exact but for the neighbour's rewritten indirect blocks (a merge moves pointers into it).
      expect(Math.abs(dry.reclaim - freed)).toBeLessThanOrEqual(16 * 1024);
    });
  });
});

describe('reads racing guest writes', () => {
  it('snapmode=cow: a snapshot read while the head is overwritten returns the snapshot\'s data', async () => {
    // Was: viewRead (src/snapshot/cow.ts) chose the head for a block the store lacked, and a write
    // landing during the read (copying the old block out first) made it return the new data.
    await withPool(async (mgr) => {
      const bs = 4096;
      const n = 1024;
      await mgr.create('tank/v', { volsize: String(n * bs), blocksize: String(bs), sparse: true, props: { snapmode: 'cow' } });
      await write(mgr, 'tank/v', 0, Buffer.alloc(n * bs, 1));
      const pool = await mgr.pool('tank');
      await pool.txg.syncNow();
      await mgr.snapshot(['tank/v@s']);
      const { volume, release } = await mgr.openVolume('tank/v');
      let pos = 0;
      let stop = false;
      // First overwrites (each copies a block out), one block after the other.
      const writer = (async () => {
        for (; pos < n && !stop; pos++) {
          await volume.write(pos * bs, Buffer.alloc(bs, 2));
          await tick(); // in-memory writes: let the reader and the syncer run
        }
        stop = true;
      })();
      // Synced head blocks: the view's head reads go to the tree (and await), so writes land meanwhile.
      const syncer = (async () => {
        while (!stop) {
          await pool.txg.syncNow();
          await sleep(1);
        }
      })();
      const { device, release: rel } = await mgr.openSnapshot('tank/v@s');
      let bad = 0;
      while (!stop && !bad) {
        // Just ahead of the writer, where blocks are overwritten for the first time.
        const from = Math.min(pos, n - 64);
        if (!(await device.read(from * bs, 64 * bs)).equals(Buffer.alloc(64 * bs, 1))) bad++;
        await tick();
      }
      stop = true;
      await writer;
      await syncer;
      rel();
      release();
      expect(bad).toBe(0);
      // A tiny ARC: the view's head reads go to the device (and await) while the writer runs.
    }, { arcMaxBytes: 64 * 1024 });
  }, 60_000);

  it('snapmode=row: diff to the head reports every block written before it began, while txgs sync', async () => {
    // Was: presenceOf (src/snapshot/layers.ts) walked the tree, then looked at the dirty maps: a txg
    // syncing in between moved blocks out of the dirty maps into a newer tree, seen in neither.
    await withPool(async (mgr) => {
      const bs = 4096;
      const size = 64 * MiB;
      await mgr.create('tank/v', { volsize: String(size), blocksize: String(bs), sparse: true, props: { snapmode: 'row' } });
      await mgr.snapshot(['tank/v@s']);
      const pool = await mgr.pool('tank');
      const { volume, release } = await mgr.openVolume('tank/v');
      const written: number[] = [];
      let stop = false;
      const writer = (async () => {
        for (let b = 0; b < size / bs && !stop; b += 3) {
          await volume.write(b * bs, Buffer.alloc(bs, 1 + (b % 250)));
          written.push(b);
          await tick();
        }
      })();
      const syncer = (async () => {
        while (!stop) {
          await pool.txg.syncNow();
          await sleep(1);
        }
      })();
      while (written.length < 2000) await sleep(5);
      let misses = 0;
      for (let k = 0; k < 200 && misses === 0; k++) {
        await sleep(2);
        const before = written.length;
        const got = new Set<number>();
        for (const r of await mgr.diff('tank/v@s', 'tank/v')) for (let o = r.offset; o < r.offset + r.length; o += bs) got.add(o / bs);
        for (const b of written.slice(0, before)) if (!got.has(b)) misses++;
      }
      stop = true;
      await writer;
      await syncer;
      release();
      expect(misses).toBe(0);
    });
  }, 60_000);
});
