/**
 * Scale: 1,000 snapshots of one volume and 200 clones of one snapshot are
 * created, listed (through the real CLI; the time is printed, never
 * asserted), read back exactly, and destroyed with no data space left.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../../src/daemon/services.js';
import { SnapshotDevice } from '../../../src/volume/snapshot-device.js';
import { buildProject } from '../../formats/qcow2/helpers.js';
import { MiB, tempDir } from '../engine/helpers.js';

const BS = 4096;
/** Block i of snapshot generation g: a recognizable pattern. */
function block(g: number): Buffer {
  const b = Buffer.alloc(BS, g & 0xff);
  b.writeUInt32LE(g, 0);
  return b;
}

describe('snapshots at scale', () => {
  it('1,000 snapshots and 200 clones: create, list, read, destroy without leaks', async () => {
    // A private build of the CLI: other suites rebuilding dist/ meanwhile cannot break the listing.
    const build = buildProject('snapscale');
    const { dir, cleanup } = await tempDir('strata-snapscale-');
    try {
      const home = join(dir, 'home');
      let mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
      await mgr.poolCreate('tank', { groups: [{ type: 'single', paths: [join(dir, 'd1.img')] }], createSize: 512 * MiB });
      await mgr.create('tank/vm', { volsize: '4M', blocksize: String(BS), sparse: true });
      const N = 1000;
      const t0 = Date.now();
      {
        const { volume, release } = await mgr.openVolume('tank/vm');
        // Snapshot i sees blocks 0..i%1024 written by generations up to i (block k holds generation k for k <= i).
        for (let i = 0; i < N; i++) {
          await volume.write(i * BS, block(i));
          await mgr.snapshot([`tank/vm@s${String(i).padStart(4, '0')}`]);
        }
        release();
      }
      const tCreate = Date.now() - t0;
      await mgr.close();

      // List through the CLI (a separate process opens the pool).
      const t1 = Date.now();
      const r = spawnSync(process.execPath, [build.cli, '--home', home, 'list', '-t', 'snapshot', '-H', '-p', '-o', 'name,used,refer'], { encoding: 'utf8' });
      const tList = Date.now() - t1;
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(N);
      expect(lines[0]!.split('\t')[0]).toBe('tank/vm@s0000');
      expect(lines[N - 1]!.split('\t')[0]).toBe(`tank/vm@s${String(N - 1).padStart(4, "0")}`);

      mgr = new PoolManager(home, { txgTimeoutMs: 60_000 });
      const pool = await mgr.pool('tank');
      // Read a spread of snapshots whole: snapshot i has blocks 0..i with generation k in block k, zeroes after.
      for (const i of [0, 1, 99, 500, 998, 999]) {
        const dev = new SnapshotDevice(pool, `tank/vm@s${String(i).padStart(4, '0')}`);
        const data = await dev.read(0, 4 * MiB);
        for (let k = 0; k < 1024; k++) {
          const want = k <= i ? block(k) : Buffer.alloc(BS);
          if (!data.subarray(k * BS, (k + 1) * BS).equals(want)) throw new Error(`snapshot ${i}: block ${k} is wrong`);
        }
      }

      // 200 clones of one snapshot, each written a little, then read.
      const t2 = Date.now();
      for (let c = 0; c < 200; c++) await mgr.clone('tank/vm@s0500', [`tank/c${c}`]);
      const tClone = Date.now() - t2;
      for (const c of [0, 57, 199]) {
        const { volume, release } = await mgr.openVolume(`tank/c${c}`);
        await volume.write(0, block(100_000 + c));
        const d = await volume.read(0, 2 * BS);
        expect(d.subarray(0, BS).equals(block(100_000 + c))).toBe(true);
        expect(d.subarray(BS, 2 * BS).equals(block(1))).toBe(true);
        release();
      }
      expect(pool.dir.get('tank/vm').snapshots[500]!.clones).toHaveLength(200);
      const refusal = await mgr.destroySnapshots('tank/vm@s0500').catch((e: { code?: string }) => e.code);
      expect(refusal).toBe('EBUSY');

      // Destroy: clones, then every snapshot in one call, then the volume.
      const t3 = Date.now();
      for (let c = 0; c < 200; c++) await mgr.destroy(`tank/c${c}`);
      const tCloneDestroy = Date.now() - t3;
      const t4 = Date.now();
      const res = await mgr.destroySnapshots('tank/vm@%');
      const tDestroy = Date.now() - t4;
      expect(res.destroyed).toHaveLength(N);
      expect(pool.dir.get('tank/vm').snapshots).toHaveLength(0);
      await mgr.destroy('tank/vm');
      await pool.txg.syncNow();
      expect(pool.logged.map((a) => a.allocatedBytes())).toEqual([0]);
      console.log(
        `scale: ${N} snapshots ${tCreate} ms; CLI list -t snapshot ${tList} ms; 200 clones ${tClone} ms; ` +
          `destroy 200 clones ${tCloneDestroy} ms; destroy ${N} snapshots ${tDestroy} ms`,
      );
      await mgr.close();
    } finally {
      await cleanup();
      build.cleanup();
    }
  }, 300_000);
});
