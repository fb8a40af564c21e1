/**
 * Reads and 4K partial writes racing on the same blocks of native, row and cow
 * volumes, with syncs and snapshots between: every read returns each block's
 * contents from before or after the write, never a mix, and never bytes a write
 * put into a buffer the read still used (the ARC's spare blocks, taken by a
 * read-modify-write; hits a volume read copies without handing them out).
 * Written by a reviewer of those changes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MiB, newPool, readAll, rng, tempDir } from '../pool/engine/helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => { for (const c of cleanups.splice(0)) await c(); });
const KiB = 1024;
const BS = 16 * KiB;

describe('concurrent reads and partial writes of the same blocks', () => {
  for (const mode of ['native', 'row', 'cow']) it(`${mode}: every read sees each block old or new, never torn`, async () => {
    const { dir, cleanup } = await tempDir('strata-crw-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 96 * MiB });
    cleanups.unshift(() => mgr.close());
    const props = mode === 'native' ? undefined : { snapmode: mode };
    await mgr.create('tank/v', { volsize: '1M', blocksize: '16K', sparse: true, ...(props ? { props } : {}) });
    const { volume } = await mgr.openVolume('tank/v');
    const st = { takes: 0, quiet: 0 };
    const take0 = pool.arc.take.bind(pool.arc);
    pool.arc.take = (k: any, t?: number, f?: any) => { const v = take0(k, t, f); if (v) st.takes++; return v; };
    const get0 = pool.arc.get.bind(pool.arc);
    pool.arc.get = (k: any, t?: number, h?: boolean) => { const v = get0(k, t, h); if (v && h === false) st.quiet++; return v; };
    const nb = (1 * MiB) / BS;
    const model = Buffer.alloc(1 * MiB);
    const r = rng(mode.length * 7 + 1);
    // fill and sync, so bases are cached spare
    for (let b = 0; b < nb; b++) { const d = r.bytes(BS); d.copy(model, b * BS); await volume.write(b * BS, d); }
    await pool.txg.syncNow();
    const snaps: { name: string; data: Buffer }[] = [];
    for (let round = 0; round < 80; round++) {
      const blocks = new Set<number>();
      while (blocks.size < 6) blocks.add(r.below(nb));
      const ops: Promise<unknown>[] = [];
      const checks: (() => void)[] = [];
      for (const b of blocks) {
        const old = Buffer.from(model.subarray(b * BS, (b + 1) * BS));
        const nw = Buffer.from(old);
        const at = r.below(4) * 4 * KiB;
        const d = r.bytes(4 * KiB);
        d.copy(nw, at);
        const into = r.below(2) ? Buffer.alloc(BS + 7, 0xcc) : undefined;
        const readFirst = r.below(2) === 0;
        const rd = () => volume.read(b * BS, BS, into).then((got) => checks.push(() => {
          const ok = got.equals(old) || got.equals(nw);
          expect(ok, `round ${round} block ${b} (${readFirst ? 'read first' : 'write first'})`).toBe(true);
        }));
        // a read before the write (hit-copied), then the write (may take), then another read
        if (readFirst) ops.push(rd());
        ops.push(volume.write(b * BS + at, d));
        if (!readFirst) ops.push(rd());
        if (r.below(2)) ops.push(rd());
        nw.copy(model, b * BS);
      }
      // a multi-block read across a block untouched this round
      if (r.below(3) === 0) ops.push(pool.txg.syncNow());
      await Promise.all(ops);
      for (const c of checks) c();
      // sequential read-then-partial-write-then-read on the same block
      const b = r.below(nb);
      expect((await volume.read(b * BS + 100, 5000)).equals(model.subarray(b * BS + 100, b * BS + 5100))).toBe(true);
      const d = r.bytes(2 * KiB); d.copy(model, b * BS + 4096);
      await volume.write(b * BS + 4096, d);
      expect((await volume.read(b * BS, BS)).equals(model.subarray(b * BS, (b + 1) * BS))).toBe(true);
      if (round % 20 === 19) {
        await pool.txg.syncNow();
        const name = `tank/v@r${round}`;
        await mgr.snapshot([name]);
        snaps.push({ name, data: Buffer.from(model) });
      }
    }
    await pool.txg.syncNow();
    // The paths under test ran: bases taken from the ARC, hits copied without being handed out.
    if (mode === 'native') expect(st.takes > 0 && st.quiet > 0, JSON.stringify(st)).toBe(true);
    expect((await readAll(volume)).equals(model)).toBe(true);
    for (const s of snaps) {
      const snap = await mgr.openSnapshot(s.name);
      expect((await readAll(snap.device)).equals(s.data), s.name).toBe(true);
      await snap.release();
    }
  });

  it('clone and origin sharing a spare block: reads of one, partial writes of the other', async () => {
    const { dir, cleanup } = await tempDir('strata-crw-');
    cleanups.push(cleanup);
    const { mgr, pool } = await newPool(dir, { size: 96 * MiB });
    cleanups.unshift(() => mgr.close());
    await mgr.create('tank/o', { volsize: '256K', blocksize: '16K', sparse: true });
    const { volume: o } = await mgr.openVolume('tank/o');
    const r = rng(9);
    const base = r.bytes(256 * KiB);
    await o.write(0, base);
    await pool.txg.syncNow();
    await mgr.snapshot(['tank/o@s']);
    await mgr.clone('tank/o@s', ['tank/c']);
    const { volume: c } = await mgr.openVolume('tank/c');
    const om = Buffer.from(base), cm = Buffer.from(base);
    for (let i = 0; i < 60; i++) {
      const b = r.below(16);
      const [rv, rm, wv, wm] = r.below(2) ? [c, cm, o, om] : [o, om, c, cm];
      expect((await rv.read(b * BS, BS)).equals(rm.subarray(b * BS, (b + 1) * BS))).toBe(true);
      const d = r.bytes(3000); const at = b * BS + r.below(BS - 3000);
      d.copy(wm, at);
      await wv.write(at, d);
      expect((await rv.read(b * BS, BS)).equals(rm.subarray(b * BS, (b + 1) * BS))).toBe(true);
      expect((await wv.read(b * BS, BS)).equals(wm.subarray(b * BS, (b + 1) * BS))).toBe(true);
      if (r.below(4) === 0) await pool.txg.syncNow();
    }
    await pool.txg.syncNow();
    expect((await readAll(o)).equals(om)).toBe(true);
    expect((await readAll(c)).equals(cm)).toBe(true);
    const s = await mgr.openSnapshot('tank/o@s');
    expect((await readAll(s.device)).equals(base)).toBe(true);
    await s.release();
  });
});
