/**
 * Lent payloads (scribbled on release) under snapshots, clones,
 * rollback, diff, FUA, sync=always, on single, mirror and raidz1 pools.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { PoolManager } from '../../src/daemon/services.js';
import { MiB, readAll, rng, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
const KiB = 1024;

for (const layout of ['mirror', 'raidz1', 'single'] as const) {
  describe(`lent stress ${layout}`, () => {
    it('model holds', async () => {
      const { dir, cleanup } = await tempDir('strata-lent8-');
      cleanups.push(cleanup);
      const home = join(dir, 'home');
      const mgr = new PoolManager(home, { txgTimeoutMs: 60_000, dirtyMax: 2 * MiB });
      const n = layout === 'single' ? 1 : layout === 'mirror' ? 2 : 3;
      const paths = Array.from({ length: n }, (_, i) => join(dir, `d${i}.img`));
      await mgr.poolCreate('tank', { groups: [{ type: layout === 'raidz1' ? 'raidz' : layout, nparity: 1, paths } as never], createSize: 128 * MiB });
      const pool = await mgr.pool('tank');
      await mgr.create('tank/v', { volsize: '4M', blocksize: '16K', sparse: true, props: { compression: 'off' } });
      const { volume } = await mgr.openVolume('tank/v');
      const size = 4 * MiB;
      let model = Buffer.alloc(size);
      const snaps = new Map<string, Buffer>();
      const r = rng(11);
      let lent = 0;
      let back = 0;
      const owned = (offset: number, data: Buffer, fua = false) => {
        lent++;
        let returned = false;
        return volume.write(offset, data, {
          fua,
          owned: true,
          release: () => {
            expect(returned).toBe(false);
            returned = true;
            back++;
            data.fill(0xde);
          },
        });
      };
      const REGION = 128 * KiB;
      for (let round = 0; round < 150; round++) {
        const regions = new Set<number>();
        while (regions.size < 6) regions.add(r.below(size / REGION));
        const ops: Promise<unknown>[] = [];
        for (const reg of regions) {
          const base = reg * REGION;
          const kind = r.below(8);
          if (kind <= 2) {
            const off = base + r.below(4) * 4 * KiB;
            const len = [16, 32, 48, 64, 100][r.below(5)]! * KiB;
            const data = r.bytes(len);
            data.copy(model, off);
            const p = owned(off, data, kind === 2);
            ops.push(p);
            if (kind === 1) {
              const off2 = off + r.below(len / (4 * KiB)) * 4 * KiB;
              const small = r.bytes(4 * KiB);
              small.copy(model, off2);
              ops.push(p.then(() => volume.write(off2, small)));
            }
          } else if (kind === 3) {
            const off = base + r.below(REGION / 512 - 8) * 512;
            const data = r.bytes(4 * KiB);
            data.copy(model, off);
            ops.push(volume.write(off, data));
          } else if (kind === 4) {
            const want = Buffer.from(model.subarray(base, base + REGION));
            ops.push(volume.read(base, REGION).then((got) => expect(got.equals(want), `round ${round} region ${reg}`).toBe(true)));
          } else if (kind === 5) {
            ops.push(pool.txg.syncNow());
          } else {
            ops.push(volume.flush());
          }
        }
        await Promise.all(ops);
        if (round % 25 === 12) {
          const s = 'tank/v@s' + round;
          await mgr.snapshot([s]);
          snaps.set(s, Buffer.from(model));
        }
        if (round % 25 === 20 && snaps.size) {
          const [s, m] = [...snaps.entries()][snaps.size - 1]!;
          const c = 'tank/c' + round;
          await mgr.clone(s, [c]);
          const { volume: cv, release } = await mgr.openVolume(c);
          expect((await readAll(cv)).equals(m), `clone ${c}`).toBe(true);
          release();
          const { device, release: r2 } = await mgr.openSnapshot(s);
          expect((await readAll(device as never)).equals(m), `snap ${s}`).toBe(true);
          r2();
        }
        if (round % 50 === 49 && snaps.size) {
          const [s, m] = [...snaps.entries()][snaps.size - 1]!;
          // Writes in flight that the rollback discards: lent ones must still come back.
          const extra = r.bytes(64 * KiB);
          await owned(0, extra);
          await mgr.rollback(s, { force: true, recursive: true });
          model = Buffer.from(m);
        }
      }
      expect((await readAll(volume)).equals(model)).toBe(true);
      await pool.txg.syncNow();
      expect(back).toBe(lent);
      pool.arc.clear();
      expect((await readAll(volume)).equals(model)).toBe(true);
      for (const [s, m] of snaps) {
        if (!pool.dir.has(s.split('@')[0]!)) continue;
        try {
          const { device, release } = await mgr.openSnapshot(s);
          expect((await readAll(device as never)).equals(m), `snap ${s} at end`).toBe(true);
          release();
        } catch (e) {
          if (!String(e).includes('does not exist')) throw e;
        }
      }
      await mgr.close();
      const m2 = new PoolManager(home);
      const { volume: v2 } = await m2.openVolume('tank/v');
      expect((await readAll(v2)).equals(model)).toBe(true);
      await m2.close();
    });
  });
}
