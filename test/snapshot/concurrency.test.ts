/**
 * Snapshots taken and destroyed while guests write, per strategy: several
 * writers, each owning a region of the volume and writing it sequentially
 * (whole blocks, partial blocks, zeroes, trims), while a controller takes
 * snapshots, destroys older ones (cow and row merge them with I/O flowing)
 * and reads them back.
 *
 * A snapshot must be a consistent cut: for each writer, its region reads
 * exactly as after some prefix of that writer's writes (a multi-block
 * write is never half in a snapshot), at least every write that returned
 * before the snapshot call began and at most those begun before it
 * returned. Once read, a snapshot never changes (through later copy-outs,
 * merges of its neighbours, export/import), and a clone of it (native,
 * row) reads the same, also after merges of the layers under its origin
 * (row) and export/import. At the end the head holds
 * every write, and space is consistent (check.ts).
 *
 * Reproduce: SNAP_CONC_SEED=<printed seed> (the tiny-ARC runs: SNAP_CONC_ARC=65536).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PoolManager } from '../../src/daemon/services.js';
import { MiB, newPool, rng, tempDir } from '../pool/engine/helpers.js';
import { checkSpace } from '../pool/snapshots/check.js';

const bs = 4096;
const WRITERS = 4;
const REGION = 96; // blocks per writer
const SIZE = WRITERS * REGION * bs;

interface W {
  off: number; // within the region
  data: Buffer | null; // null: zeroes
  len: number;
  start: number;
  end: number;
}

interface Snap {
  name: string;
  start: number;
  end: number;
  seen: Buffer | null;
}

function stateAfter(writes: W[], j: number): Buffer {
  const b = Buffer.alloc(REGION * bs);
  for (const w of writes.slice(0, j)) {
    if (w.data) w.data.copy(b, w.off);
    else b.fill(0, w.off, w.off + w.len);
  }
  return b;
}

/** The prefix j of a writer's writes the region shows, or a problem. */
function prefixOf(writes: W[], region: Buffer, lo: number, hi: number): number | string {
  let state = stateAfter(writes, lo);
  for (let j = lo; j <= hi; j++) {
    if (j > lo) {
      const w = writes[j - 1]!;
      if (w.data) w.data.copy(state, w.off);
      else state.fill(0, w.off, w.off + w.len);
    }
    if (state.equals(region)) return j;
  }
  // Diagnose: does any prefix at all match (then the window was wrong)?
  state = Buffer.alloc(REGION * bs);
  for (let j = 0; j <= writes.length; j++) {
    if (j > 0) {
      const w = writes[j - 1]!;
      if (w.data) w.data.copy(state, w.off);
      else state.fill(0, w.off, w.off + w.len);
    }
    if (state.equals(region)) return `matches prefix ${j}, outside the window [${lo}, ${hi}]`;
  }
  return `matches no prefix of the writer's ${writes.length} writes (window [${lo}, ${hi}])`;
}

async function run(mode: 'native' | 'cow' | 'row', seed: number, arcMaxBytes?: number): Promise<void> {
  const { dir, cleanup } = await tempDir('strata-snapconc-');
  const r = rng(seed);
  const what = `snapmode=${mode} seed ${seed}${arcMaxBytes ? ` arc ${arcMaxBytes}` : ''}`;
  try {
    let { mgr } = await newPool(dir, { size: 256 * MiB, arcMaxBytes });
    await mgr.create('tank/v', { volsize: String(SIZE), blocksize: String(bs), sparse: true, props: { snapmode: mode } });
    let clock = 0;
    const writes: W[][] = Array.from({ length: WRITERS }, () => []);
    const snaps: Snap[] = [];
    const problems: string[] = [];
    let stop = false;

    const { volume, release } = await mgr.openVolume('tank/v');
    const writer = async (id: number) => {
      const wr = rng(seed ^ (id + 1) * 0x9e3779b9);
      while (!stop) {
        const kind = wr.below(10);
        const len = kind < 5 ? (1 + wr.below(4)) * bs : 1 + wr.below(3 * bs);
        let off = wr.below(REGION * bs - len + 1);
        if (kind < 5) off -= off % bs;
        const zero = kind === 9 ? 1 : kind === 8 ? 2 : 0;
        const data = zero ? null : wr.bytes(len);
        const w: W = { off, data, len, start: ++clock, end: 0 };
        writes[id]!.push(w);
        const at = id * REGION * bs + off;
        if (zero === 1) await volume.writeZeroes(at, len);
        else if (zero === 2) await volume.trim(at, len);
        else await volume.write(at, data!);
        w.end = ++clock;
        if (wr.below(8) === 0) await volume.flush();
      }
    };

    const read = async (name: string): Promise<Buffer> => {
      const { device, release: rel } = await mgr.openSnapshot(`tank/v@${name}`);
      try {
        return await device.read(0, SIZE);
      } finally {
        rel();
      }
    };

    /** Check a snapshot's content: a consistent cut within its window, and unchanged since first seen. */
    const verify = async (s: Snap, when: string) => {
      const got = await read(s.name);
      if (s.seen) {
        if (!got.equals(s.seen)) {
          const blocks: number[] = [];
          for (let b = 0; b * bs < SIZE; b++) if (!got.subarray(b * bs, (b + 1) * bs).equals(s.seen.subarray(b * bs, (b + 1) * bs))) blocks.push(b);
          const zero = blocks.filter((b) => got.subarray(b * bs, (b + 1) * bs).every((x) => x === 0)).length;
          problems.push(`${what}: @${s.name} changed (${when}; snapshots now ${snaps.map((x) => x.name).join(',')}): blocks ${blocks.slice(0, 12).join(',')}${blocks.length > 12 ? '...' : ''} (${blocks.length}, ${zero} now zeroes)`);
        }
        return;
      }
      s.seen = got;
      for (let id = 0; id < WRITERS; id++) {
        const list = writes[id]!.filter((w) => w.start < s.end);
        // At least every write that returned before the snapshot began; at most those begun before it returned.
        const lo = list.filter((w) => w.end !== 0 && w.end < s.start).length;
        const hi = list.filter((w) => w.start < s.end).length;
        const p = prefixOf(list, got.subarray(id * REGION * bs, (id + 1) * REGION * bs), lo, hi);
        if (typeof p === 'string') problems.push(`${what}: @${s.name}, writer ${id}: ${p}`);
      }
    };

    const clones: { name: string; snap: Snap }[] = [];
    const verifyClone = async (c: { name: string; snap: Snap }, when: string) => {
      const { volume: cv, release: rel } = await mgr.openVolume(c.name);
      try {
        if (!(await cv.read(0, SIZE)).equals(c.snap.seen!)) problems.push(`${what}: clone ${c.name} of @${c.snap.name} does not read as the snapshot (${when})`);
      } finally {
        rel();
      }
    };

    const controller = async () => {
      for (let k = 0; k < 14; k++) {
        await new Promise((res) => setTimeout(res, 5 + r.below(40)));
        const s: Snap = { name: `s${k}`, start: ++clock, end: 0, seen: null };
        await mgr.snapshot([`tank/v@${s.name}`]);
        s.end = ++clock;
        snaps.push(s);
        await verify(s, 'first read');
        if (mode !== 'cow' && r.below(3) === 0) {
          // A clone (row: reading the snapshot's layers by reference) must read as the snapshot did.
          const c = { name: `tank/c${k}`, snap: s };
          await mgr.clone(`tank/v@${s.name}`, [c.name]);
          clones.push(c);
          await verifyClone(c, 'just cloned');
        }
        const free = snaps.filter((x) => !clones.some((c) => c.snap === x));
        if (free.length > 3 || (free.length > 1 && r.below(3) === 0)) {
          // Destroy one (oldest, newest or a middle one, not cloned): cow/row merge with the writers going
          // (row: possibly a layer under a clone's origin, merged up into it).
          const gone = free[r.below(free.length)]!;
          snaps.splice(snaps.indexOf(gone), 1);
          await mgr.destroySnapshots(`tank/v@${gone.name}`);
          for (const x of snaps) await verify(x, `after destroying @${gone.name}`);
          for (const c of clones) await verifyClone(c, `after destroying @${gone.name}`);
        }
      }
    };

    await Promise.all([controller(), ...Array.from({ length: WRITERS }, (_, id) => writer(id))].map((p, i) => (i === 0 ? p.finally(() => (stop = true)) : p)));
    await volume.flush();
    release();
    expect(problems, problems.join('\n')).toEqual([]);

    const checkAll = async (when: string) => {
      const { volume: v, release: rel } = await mgr.openVolume('tank/v');
      const head = await v.read(0, SIZE);
      rel();
      for (let id = 0; id < WRITERS; id++) {
        const want = stateAfter(writes[id]!, writes[id]!.length);
        if (!head.subarray(id * REGION * bs, (id + 1) * REGION * bs).equals(want)) problems.push(`${what}: head, writer ${id}: not the last write's state (${when})`);
      }
      for (const s of snaps) await verify(s, when);
      for (const c of clones) await verifyClone(c, when);
      expect(problems, problems.join('\n')).toEqual([]);
    };
    await checkAll('at the end');
    const pool = await mgr.pool('tank');
    expect(await checkSpace(pool), what).toEqual([]);
    await mgr.poolExport('tank');
    await mgr.close();
    mgr = new PoolManager(join(dir, 'home'), { txgTimeoutMs: 60_000, arcMaxBytes });
    await mgr.poolImport('tank', dir);
    await checkAll('after export/import');
    expect(await checkSpace(await mgr.pool('tank')), what).toEqual([]);
    for (const c of clones) await mgr.destroy(c.name);
    await mgr.destroy('tank/v', { recursive: true });
    const p2 = await mgr.pool('tank');
    await p2.txg.syncNow();
    expect(p2.logged.map((a) => a.allocatedBytes()), what).toEqual(p2.logged.map(() => 0));
    await mgr.close();
    console.log(`${what}: ${writes.map((l) => l.length).join('+')} writes, ${snaps.length} snapshots kept, ${clones.length} clones`);
  } finally {
    await cleanup();
  }
}

const SEED = process.env['SNAP_CONC_SEED'];

describe.each(['native', 'cow', 'row'] as const)('snapmode=%s: snapshots while guests write', (mode) => {
  it('every snapshot is a consistent cut and never changes', async () => {
    const r = rng(mode === 'native' ? 7001 : mode === 'cow' ? 7002 : 7003);
    if (SEED) return run(mode, Number(SEED), process.env['SNAP_CONC_ARC'] ? Number(process.env['SNAP_CONC_ARC']) : undefined);
    const seeds = [r.next(), r.next(), r.next()];
    // The last with a tiny ARC: reads of synced blocks go to the device and await, so more interleavings.
    for (const [i, seed] of seeds.entries()) await run(mode, seed, i === seeds.length - 1 ? 64 * 1024 : undefined);
  }, 300_000);
});
