/**
 * The scan traversal visits every allocated block exactly once (snapshots,
 * clones, metadata), in an order a bookmark can resume, and `minBirth`
 * limits it to blocks born after a txg (resilver by DTL).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { nextChunk, type ScanItem } from '../../../src/pool/scan/traverse.js';
import type { Pool } from '../../../src/pool/pool.js';
import type { Bookmark } from '../../../src/pool/scan/state.js';
import { dvaKey } from '../../../src/pool/blkptr.js';

const MiB = 1024 * 1024;

async function traverse(pool: Pool, minBirth: number, chunk: number): Promise<ScanItem[]> {
  const out: ScanItem[] = [];
  let at: Bookmark | null = { ds: 0, part: 0, blkid: 0 };
  while (at) {
    const c = await nextChunk(pool, at, minBirth, chunk, () => {
      throw new Error('read error');
    });
    out.push(...c.items);
    at = c.next;
  }
  return out;
}

describe('scan traversal', () => {
  it('visits each block once across snapshots and clones, in any chunking, and filters by birth', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-traverse-'));
    const mgr = new PoolManager(join(dir, 'home'));
    try {
      const devs = [0, 1].map((i) => {
        const p = join(dir, `d${i}`);
        writeFileSync(p, '');
        truncateSync(p, 64 * MiB);
        return p;
      });
      await mgr.poolCreate('tank', { groups: [{ type: 'mirror', paths: devs }] });
      await mgr.create('tank/vol', { volsize: String(4 * MiB), blocksize: '16384', sparse: true });
      const { volume, release } = await mgr.openVolume('tank/vol');
      const pool = await mgr.pool('tank');
      const write = async (blk: number, n: number) => {
        await volume.write(blk * 16384, randomBytes(n * 16384));
        await volume.flush();
        await pool.txg.syncNow();
      };
      await write(0, 100);
      await mgr.snapshot(['tank/vol@a']);
      await write(50, 100);
      await mgr.snapshot(['tank/vol@b']);
      await mgr.clone('tank/vol@a', ['tank/clone']);
      await write(10, 5);
      const mid = pool.txg.synced;
      await write(200, 3);
      release();
      const all = await traverse(pool, 0, 16);
      const keys = all.map((i) => `${dvaKey(i.bp.dvas[0]!)}@${i.bp.birth}`);
      expect(new Set(keys).size).toBe(keys.length);
      // Every data block: head now has 100 + 100 - overlap... count level-0 blocks per dataset part.
      const l0 = all.filter((i) => i.level === 0 && i.ds !== 0);
      // @a: 100 blocks; @b: 100 new (blocks 50..149); head: 5 + 3 new; the clone shares @a's.
      expect(l0.length).toBe(100 + 100 + 5 + 3);
      expect(all.some((i) => i.ds === 0)).toBe(true);
      // Chunking does not change the set.
      const again = await traverse(pool, 0, 1000);
      expect(new Set(again.map((i) => `${dvaKey(i.bp.dvas[0]!)}@${i.bp.birth}`))).toEqual(new Set(keys));
      // Birth filter: only what was born after `mid`.
      const late = await traverse(pool, mid, 7);
      expect(late.every((i) => i.bp.birth > mid)).toBe(true);
      expect(late.filter((i) => i.level === 0 && i.ds !== 0).length).toBe(3);
    } finally {
      await mgr.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
