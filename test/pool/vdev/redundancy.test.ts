import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSparseFile } from '../../../src/pool/vdev/leaf-file.js';
import { VdevTree } from '../../../src/pool/vdev/tree.js';
import { MiB, tempDir, verifierFor } from './helpers.js';
import { buildRig, corrupt, endOf, LAYOUTS, readAll, readRegion, regionsOn, writeBlocks, type Damage } from './redundancy-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

/** Pick `k` distinct children. */
function pickChildren(width: number, k: number): number[] {
  const all = Array.from({ length: width }, (_, i) => i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = randomInt(0, i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, k);
}

describe.each(LAYOUTS)('$name', (l) => {
  it(`survives corruption of ${l.nparity} device file(s): exact data, repaired in place, counted on the right devices`, async () => {
    const { tree, top, paths } = await buildRig(dir, l);
    const blocks = await writeBlocks(top, 60);
    const victims = pickChildren(l.width, l.nparity);
    const damage: Damage[] = [];
    const expectCksum = new Map<number, number>();
    // Damage every other block on every victim (so some blocks lose nparity
    // columns at once), data columns only: a normal read never looks at
    // parity (scrub does, tested below).
    for (const [i, b] of blocks.entries()) {
      if (i % 2 === 1) continue;
      for (const v of victims) {
        const regions = regionsOn(l, b, v, false);
        if (regions.length === 0) continue;
        const [s, e] = regions[randomInt(0, regions.length)]!;
        damage.push(await corrupt(paths[v]!, s, e));
        expectCksum.set(v, (expectCksum.get(v) ?? 0) + 1);
      }
    }
    expect(damage.length).toBeGreaterThan(0);
    // A mirror reads one child per read (rotating): read each block once per
    // child so every damaged copy is looked at.
    await readAll(top, blocks, 'normal', l.kind === 'mirror' ? l.width : 1);
    for (const d of damage) expect((await readRegion(d.path, d.start, d.end)).equals(d.pristine)).toBe(true);
    tree.leaves().forEach((leaf, i) => {
      expect(leaf.errors).toEqual({ read: 0, write: 0, cksum: expectCksum.get(i) ?? 0 });
    });
    // A second pass finds nothing.
    await readAll(top, blocks, 'scrub');
    tree.leaves().forEach((leaf, i) => expect(leaf.errors.cksum).toBe(expectCksum.get(i) ?? 0));
    expect(tree.state()).toBe('ONLINE');
    await tree.close();
  });

  it('scrub repairs damaged data and parity, and a second scrub is clean', async () => {
    const { tree, top, paths } = await buildRig(dir, l);
    const blocks = await writeBlocks(top, 40);
    const victims = pickChildren(l.width, l.nparity);
    const damage: Damage[] = [];
    for (const b of blocks) {
      for (const v of victims) {
        const regions = regionsOn(l, b, v, true);
        if (regions.length === 0 || randomInt(0, 2) === 0) continue;
        const [s, e] = regions[randomInt(0, regions.length)]!;
        damage.push(await corrupt(paths[v]!, s, e));
      }
    }
    await readAll(top, blocks, 'scrub');
    for (const d of damage) expect((await readRegion(d.path, d.start, d.end)).equals(d.pristine)).toBe(true);
    const total = tree.leaves().reduce((s, x) => s + x.errors.cksum, 0);
    expect(total).toBe(damage.length);
    for (const [i, leaf] of tree.leaves().entries()) if (!victims.includes(i)) expect(leaf.errors.cksum).toBe(0);
    await readAll(top, blocks, 'scrub');
    expect(tree.leaves().reduce((s, x) => s + x.errors.cksum, 0)).toBe(total);
    await tree.close();
  });

  it(`imports DEGRADED with ${l.nparity} device(s) missing and reads everything; resilvers new devices; one more is UNAVAIL`, async () => {
    const { tree, top, paths, cfg } = await buildRig(dir, l);
    const blocks = await writeBlocks(top, 30);
    await tree.close();
    const gone = pickChildren(l.width, l.nparity);
    for (const g of gone) await rm(paths[g]!);
    const t1 = await VdevTree.open(cfg);
    expect(t1.state()).toBe('DEGRADED');
    expect(t1.missing().map((m) => m.path).sort()).toEqual(gone.map((g) => paths[g]).sort());
    await readAll(t1.top(0), blocks);
    // Writes while degraded still land and read back.
    blocks.push(...(await writeBlocks(t1.top(0), 3, 40, endOf(t1.top(0), blocks))));
    await readAll(t1.top(0), blocks);
    await t1.close();

    // Replace the missing devices with blank files at the same paths and resilver.
    for (const g of gone) await createSparseFile(paths[g]!, 64 * MiB);
    const t2 = await VdevTree.open(cfg);
    expect(t2.state()).toBe('ONLINE');
    const top2 = t2.top(0);
    for (const g of gone) top2.setResilvering!(t2.leaves()[g]!, true);
    expect(t2.config().children[0]).toMatchObject({ children: expect.arrayContaining([expect.objectContaining({ resilvering: true })]) });
    await readAll(top2, blocks, 'resilver');
    for (const g of gone) top2.setResilvering!(t2.leaves()[g]!, false);
    // Resilvered devices are blamed for nothing; a scrub after it is clean.
    await readAll(top2, blocks, 'scrub');
    expect(t2.leaves().map((x) => x.errors)).toEqual(t2.leaves().map(() => ({ read: 0, write: 0, cksum: 0 })));
    await t2.close();

    // One device beyond redundancy.
    const more = pickChildren(l.width, l.nparity + 1);
    for (const g of more) await rm(paths[g]!);
    const t3 = await VdevTree.open(cfg);
    expect(t3.state()).toBe('UNAVAIL');
    expect(() => t3.assertUsable('tank')).toThrow(/not enough devices/);
    await t3.close();
  });

  it('blocks whose every copy is damaged fail with EIO, never wrong data', async () => {
    const { tree, top, paths } = await buildRig(dir, l);
    const [b] = await writeBlocks(top, 1, 8);
    // Damage nparity+1 children's parts of the block (all of them for a mirror).
    for (const v of pickChildren(l.width, l.width)) {
      for (const [s, e] of regionsOn(l, b!, v, true)) await corrupt(paths[v]!, s, e);
    }
    await expect(top.read(b!.offset, b!.data.length, verifierFor(b!.data))).rejects.toMatchObject({ code: 'EIO' });
    await tree.close();
  });
});
