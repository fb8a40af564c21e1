/**
 * Scrub traversal over cow and row volumes: every block of every head,
 * store and layer (and a row clone's own layers) is visited exactly once,
 * and together they are exactly the data space the space map holds, so
 * scrub and resilver cover snapshots of every strategy and nothing leaks.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nextChunk, type ScanItem } from '../../src/pool/scan/traverse.js';
import type { Pool } from '../../src/pool/pool.js';
import type { Bookmark } from '../../src/pool/scan/state.js';
import { bpAsize, dvaKey } from '../../src/pool/blkptr.js';
import { loggedAllocated, newPool, tempDir } from '../pool/engine/helpers.js';

async function traverse(pool: Pool): Promise<ScanItem[]> {
  const out: ScanItem[] = [];
  let at: Bookmark | null = { ds: 0, part: 0, blkid: 0 };
  while (at) {
    const c = await nextChunk(pool, at, 0, 64, () => {
      throw new Error('read error');
    });
    out.push(...c.items);
    at = c.next;
  }
  return out;
}

describe('scan traversal of cow and row volumes', () => {
  it('visits every block of heads, stores and layers once; they are exactly the allocated data', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const { mgr, pool } = await newPool(dir);
      const bs = 16384;
      for (const mode of ['cow', 'row']) {
        await mgr.create(`tank/${mode}`, { volsize: String(256 * bs), sparse: true, props: { snapmode: mode } });
        const { volume, release } = await mgr.openVolume(`tank/${mode}`);
        await volume.write(0, randomBytes(100 * bs));
        await mgr.snapshot([`tank/${mode}@a`]);
        await volume.write(50 * bs, randomBytes(100 * bs));
        await volume.writeZeroes(10 * bs, 4 * bs);
        await mgr.snapshot([`tank/${mode}@b`]);
        await volume.write(120 * bs + 300, randomBytes(5000));
        release();
      }
      await mgr.clone('tank/row@a', ['tank/rowclone']);
      const c = await mgr.openVolume('tank/rowclone');
      await c.volume.write(3 * bs, randomBytes(2 * bs));
      c.release();
      await pool.txg.syncNow();
      const all = await traverse(pool);
      const keys = all.map((i) => `${dvaKey(i.bp.dvas[0]!)}@${i.bp.birth}`);
      expect(new Set(keys).size).toBe(keys.length);
      const data = all.filter((i) => i.ds !== 0).reduce((n, i) => n + bpAsize(i.bp), 0);
      expect(data).toBe(loggedAllocated(pool));
      // cow: @a's store holds the 50 first-overwritten blocks of 0..99 (50..99) plus the zeroed 10..13.
      const cowStoreA = pool.dir.get('tank/cow').snapshots[0]!;
      expect(cowStoreA.layerUsed).toBeGreaterThan(0);
      // Destroying everything frees every data block.
      await mgr.destroy('tank/rowclone', {});
      await mgr.destroy('tank/row', { recursive: true });
      await mgr.destroy('tank/cow', { recursive: true });
      await pool.txg.syncNow();
      await pool.txg.syncNow();
      await pool.txg.syncNow();
      expect(loggedAllocated(pool)).toBe(0);
      await mgr.close();
    } finally {
      await cleanup();
    }
  }, 60_000);
});
