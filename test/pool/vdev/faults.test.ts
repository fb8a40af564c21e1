/**
 * Lying, failing and vanishing devices under mirror and raidz, through the
 * fault-injecting leaf: wrong data never reaches the reader, and errors are
 * counted on the device that caused them.
 */
import { randomInt } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FaultLeaf } from '../../../src/pool/vdev/fault-leaf.js';
import { FileLeaf } from '../../../src/pool/vdev/leaf-file.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { MirrorVdev } from '../../../src/pool/vdev/mirror.js';
import { raidzMap } from '../../../src/pool/vdev/raidz-math.js';
import { RaidzVdev } from '../../../src/pool/vdev/raidz.js';
import { LEAF_DATA_START, SECTOR } from '../../../src/pool/vdev/types.js';
import { MiB, tempDir, verifierFor } from './helpers.js';
import { buildRig, LAYOUTS, readAll, writeBlocks } from './redundancy-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

function faulty(): { leaves: FaultLeaf[]; open: (cfg: { guid: string }, path: string) => Promise<FaultLeaf> } {
  const leaves: FaultLeaf[] = [];
  return {
    leaves,
    open: async (cfg, path) => {
      const l = new FaultLeaf(await FileLeaf.open(path, cfg.guid), { seed: leaves.length + 7, probe: false });
      leaves.push(l);
      return l;
    },
  };
}

describe.each(LAYOUTS)('$name with faulty devices', (l) => {
  it(`${l.nparity} lying device(s) (wrong data on 40% of reads, phantom writes) never yield wrong data`, async () => {
    const f = faulty();
    const { tree, top } = await buildRig(dir, l, { openLeaf: f.open });
    const liars = f.leaves.slice(0, l.nparity);
    for (const x of liars) x.inject({ op: 'write', kind: 'lie', probability: 0.3 });
    const blocks = await writeBlocks(top, 30);
    for (const x of liars) x.inject({ op: 'read', kind: 'lie', probability: 0.4, offset: LEAF_DATA_START });
    for (let pass = 0; pass < 3; pass++) await readAll(top, blocks, pass === 1 ? 'scrub' : 'normal');
    expect(liars.reduce((s, x) => s + x.injected.lie, 0)).toBeGreaterThan(0);
    // Only liars are blamed.
    for (const x of f.leaves.slice(l.nparity)) expect(x.errors).toEqual({ read: 0, write: 0, cksum: 0 });
    expect(liars.reduce((s, x) => s + x.errors.cksum, 0)).toBeGreaterThan(0);
    await tree.close();
  });

  it('when every device lies, reads fail with EIO or return the right data, never wrong data', async () => {
    const f = faulty();
    const { tree, top } = await buildRig(dir, l, { openLeaf: f.open });
    const blocks = await writeBlocks(top, 10, 4);
    for (const x of f.leaves) x.inject({ op: 'read', kind: 'lie', probability: 0.7, offset: LEAF_DATA_START });
    let eio = 0;
    for (const b of blocks) {
      try {
        expect((await top.read(b.offset, b.data.length, verifierFor(b.data))).equals(b.data)).toBe(true);
      } catch (e) {
        expect(e).toMatchObject({ code: 'EIO' });
        eio++;
      }
    }
    expect(eio).toBeLessThanOrEqual(blocks.length);
    await tree.close();
  });

  it(`read errors on ${l.nparity} device(s) are counted there and the bad sectors rewritten`, async () => {
    const f = faulty();
    const { tree, top } = await buildRig(dir, l, { openLeaf: f.open });
    const blocks = await writeBlocks(top, 20);
    const bad = f.leaves.slice(0, l.nparity);
    // The first read of each data-area range on these devices fails (a media error),
    // the rewrite then succeeds (the drive remaps the sector).
    for (const x of bad) x.inject({ op: 'read', kind: 'error', offset: LEAF_DATA_START, count: 5 });
    await readAll(top, blocks, 'scrub');
    for (const x of bad) {
      expect(x.errors.read).toBe(x.injected.error);
      expect(x.errors.cksum).toBe(0);
      expect(x.state).toBe('ONLINE');
    }
    expect(bad.reduce((s, x) => s + x.errors.read, 0)).toBeGreaterThan(0);
    for (const x of f.leaves.slice(l.nparity)) expect(x.errors).toEqual({ read: 0, write: 0, cksum: 0 });
    await tree.close();
  });

  it('write failures within redundancy succeed and are reported for resilver; beyond it they fail', async () => {
    const f = faulty();
    const missed: string[] = [];
    const { tree, top } = await buildRig(dir, l, { openLeaf: f.open, events: { onWriteMissed: (leaf) => missed.push(leaf.guid) } });
    for (const x of f.leaves.slice(0, l.nparity)) x.inject({ op: 'write', kind: 'error' });
    const blocks = await writeBlocks(top, 5);
    expect(new Set(missed)).toEqual(new Set(f.leaves.slice(0, l.nparity).map((x) => x.guid)));
    for (const x of f.leaves.slice(0, l.nparity)) expect(x.errors.write).toBeGreaterThan(0);
    await readAll(top, blocks);
    f.leaves[l.nparity]!.inject({ op: 'write', kind: 'error' });
    // A block spanning every child: beyond redundancy.
    const wide = Buffer.alloc(l.width * 4 * SECTOR, 3);
    await expect(top.write(10 * MiB, wide)).rejects.toMatchObject({ code: 'EIO' });
    await tree.close();
  });

  it('state follows ZFS: DEGRADED within redundancy, UNAVAIL beyond, OFFLINE when all offline', async () => {
    const f = faulty();
    const { tree, top } = await buildRig(dir, l, { openLeaf: f.open });
    expect(top.state()).toBe('ONLINE');
    f.leaves[0]!.state = 'DEGRADED';
    expect(top.state()).toBe('DEGRADED');
    f.leaves[0]!.state = 'ONLINE';
    for (let i = 0; i < l.nparity; i++) f.leaves[i]!.state = i % 2 ? 'OFFLINE' : 'FAULTED';
    expect(top.state()).toBe('DEGRADED');
    f.leaves[l.nparity]!.state = 'REMOVED';
    expect(top.state()).toBe('UNAVAIL');
    expect(tree.state()).toBe('UNAVAIL');
    for (const x of f.leaves) x.state = 'OFFLINE';
    expect(top.state()).toBe('OFFLINE');
    await tree.close();
  });
});

describe('raidz self-healing, property-based (memory devices)', () => {
  it('any <= nparity silently corrupted columns: exact data, columns repaired, blamed once each', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<1 | 2 | 3>(1, 2, 3),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 1, max: 48 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        async (np, extra, sectors, sectorOff, picks) => {
          const width = np + 1 + extra;
          const leaves = Array.from({ length: width }, (_, i) => new MemoryLeaf(`g${i}`, `m${i}`, 64 * MiB));
          const cfgs = leaves.map((x) => ({ type: 'file' as const, guid: x.guid, path: x.path }));
          const rz = new RaidzVdev(leaves, { id: 0, guid: 'r', nparity: np, childConfigs: cfgs });
          const data = Buffer.alloc(sectors * SECTOR);
          for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((Math.imul(i + sectorOff, 2654435761) ^ sectors) >>> 0, i);
          const off = sectorOff * SECTOR;
          await rz.write(off, data);
          const m = raidzMap(off, data.length, width, np);
          const victims = [...new Set(picks.map((p) => p % m.acols))].slice(0, np);
          const before = victims.map((c) => leaves[m.cols[c]!.devidx]!.peek(LEAF_DATA_START + m.cols[c]!.offset, m.cols[c]!.size));
          for (const c of victims) {
            const col = m.cols[c]!;
            const at = LEAF_DATA_START + col.offset + randomInt(0, col.size);
            const leaf = leaves[col.devidx]!;
            leaf.poke(at, Buffer.from([leaf.peek(at, 1)[0]! ^ (1 + randomInt(0, 255))]));
          }
          const got = await rz.read(off, data.length, verifierFor(data), { mode: 'scrub' });
          expect(got.equals(data)).toBe(true);
          victims.forEach((c, i) => {
            const col = m.cols[c]!;
            expect(leaves[col.devidx]!.peek(LEAF_DATA_START + col.offset, col.size).equals(before[i]!)).toBe(true);
            expect(leaves[col.devidx]!.errors.cksum).toBe(1);
          });
          expect(leaves.reduce((s, x) => s + x.errors.cksum, 0)).toBe(victims.length);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('mirror over memory devices: a child with a read error is repaired from the other', async () => {
    const a = new FaultLeaf(new MemoryLeaf('a', 'a', 64 * MiB), { probe: false });
    const b = new MemoryLeaf('b', 'b', 64 * MiB);
    const mir = new MirrorVdev([a, b], { id: 0, guid: 'm', childConfigs: [a, b].map((x) => ({ type: 'file' as const, guid: x.guid, path: x.path })) });
    const d = Buffer.alloc(2 * SECTOR, 9);
    await mir.write(0, d);
    a.inject({ op: 'read', kind: 'error', count: 1 });
    for (let i = 0; i < 2; i++) expect((await mir.read(0, d.length, verifierFor(d))).equals(d)).toBe(true);
    expect(a.errors).toEqual({ read: 1, write: 0, cksum: 0 });
    expect(b.errors).toEqual({ read: 0, write: 0, cksum: 0 });
    // writev: adjacent blocks in one device write per child
    const e = Buffer.alloc(SECTOR, 1);
    const f = Buffer.alloc(3 * SECTOR, 2);
    await mir.writev(8 * SECTOR, [e, f]);
    expect((await mir.read(9 * SECTOR, f.length, verifierFor(f))).equals(f)).toBe(true);
    expect(b.peek(LEAF_DATA_START + 8 * SECTOR, SECTOR).equals(e)).toBe(true);
  });
});
