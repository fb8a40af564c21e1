import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildRootConfig, leafConfigFor, parseLayout } from '../../../src/pool/vdev/layout.js';
import { FileLeaf, createSparseFile } from '../../../src/pool/vdev/leaf-file.js';
import { MirrorVdev } from '../../../src/pool/vdev/mirror.js';
import { ReplacingLeaf } from '../../../src/pool/vdev/replacing.js';
import { SingleVdev } from '../../../src/pool/vdev/single.js';
import * as admin from '../../../src/pool/vdev/tree-admin.js';
import { VdevTree } from '../../../src/pool/vdev/tree.js';
import type { VdevRootConfig } from '../../../src/pool/vdev/types.js';
import { makeFiles, MiB, tempDir } from './helpers.js';
import { readAll, writeBlocks } from './redundancy-harness.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

async function newDevice(name: string, size = 64 * MiB): Promise<{ leaf: FileLeaf; cfg: Awaited<ReturnType<typeof leafConfigFor>> }> {
  const p = join(dir, name);
  await createSparseFile(p, size);
  const cfg = await leafConfigFor(p);
  return { leaf: await FileLeaf.open(p, cfg.guid), cfg };
}

const clean = (t: VdevTree): void => {
  for (const l of t.leaves()) expect(l.errors).toEqual({ read: 0, write: 0, cksum: 0 });
};

describe('attach / detach', () => {
  it('a single device becomes a mirror, resilvers, survives losing the original, and detaches back', async () => {
    const [p] = await makeFiles(dir, 1);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout([p!])));
    const blocks = await writeBlocks(tree.top(0), 20);
    const { leaf, cfg } = await newDevice('new');
    const m = admin.attach(tree, tree.leaves()[0]!, leaf, cfg);
    expect(m).toBeInstanceOf(MirrorVdev);
    expect(tree.top(0)).toBe(m);
    expect(admin.needsResilver(tree)).toBe(true);
    // Normal reads avoid the stale device (it holds zeroes): no errors blamed.
    await readAll(m, blocks, 'normal', 2);
    clean(tree);
    await readAll(m, blocks, 'resilver');
    await admin.resilverDone(tree);
    expect(admin.needsResilver(tree)).toBe(false);
    const cfgNow = tree.config();
    expect(cfgNow.children[0]).toMatchObject({ type: 'mirror', id: 0, asize: m.capacity });
    await readAll(m, blocks, 'scrub');
    clean(tree);
    // Detaching the original leaves the new device holding everything.
    await admin.detach(tree, tree.findLeaf(p!)!);
    expect(tree.top(0)).toBeInstanceOf(SingleVdev);
    await readAll(tree.top(0), blocks);
    expect(tree.config().children[0]).toMatchObject({ type: 'file', path: cfg.path, id: 0 });
    await tree.close();
  });

  it('refuses to attach to raidz, a too-small device, or to detach the last valid copy', async () => {
    const p = await makeFiles(dir, 3);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(['raidz', ...p, ])));
    const small = await newDevice('small', 64 * MiB);
    await expect(async () => admin.attach(tree, tree.leaves()[0]!, small.leaf, small.cfg)).rejects.toMatchObject({ code: 'ENOTSUP' });
    await expect(admin.detach(tree, tree.leaves()[0]!)).rejects.toMatchObject({ code: 'ENOTSUP' });
    await tree.close();
    const q = await makeFiles(dir, 2, 100 * MiB, 'm');
    const t2 = await VdevTree.open(await buildRootConfig(parseLayout(['mirror', ...q])));
    expect(() => admin.attach(t2, t2.leaves()[0]!, small.leaf, small.cfg)).toThrow(/too small/);
    t2.leaves()[1]!.state = 'FAULTED';
    await expect(admin.detach(t2, t2.leaves()[0]!)).rejects.toThrow(/no valid replicas/);
    await t2.close();
    await small.leaf.close();
  });
});

describe('replace', () => {
  it('raidz2: replace a healthy device; reads keep working from the old one; resilver; config round trips mid-way', async () => {
    const p = await makeFiles(dir, 4);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(['raidz2', ...p])));
    const blocks = await writeBlocks(tree.top(0), 25);
    const { leaf, cfg } = await newDevice('new');
    const old = tree.findLeaf(p[1]!)!;
    const r = admin.replace(tree, old, leaf, cfg);
    expect(r).toBeInstanceOf(ReplacingLeaf);
    expect(tree.top(0).state()).toBe('ONLINE');
    // Writes during the replacement land on both.
    blocks.push(...(await writeBlocks(tree.top(0), 5, 8, 40 * MiB)));
    await readAll(tree.top(0), blocks);
    clean(tree);
    // Export mid-resilver: the replacing vdev and the stale flag persist.
    const mid = tree.config();
    expect(JSON.stringify(mid)).toContain('"replacing"');
    await tree.close();
    const t2 = await VdevTree.open(JSON.parse(JSON.stringify(mid)) as VdevRootConfig);
    expect(admin.needsResilver(t2)).toBe(true);
    await readAll(t2.top(0), blocks, 'resilver');
    await admin.resilverDone(t2);
    const done = t2.config();
    expect(JSON.stringify(done)).not.toContain('replacing');
    expect(t2.leaves().map((l) => l.path)).toEqual([p[0], cfg.path, p[2], p[3]]);
    // The new device now holds its columns: lose two others and read everything.
    await t2.close();
    await rm(p[0]!);
    await rm(p[2]!);
    const t3 = await VdevTree.open(done);
    expect(t3.state()).toBe('DEGRADED');
    await readAll(t3.top(0), blocks);
    await t3.close();
  });

  it('mirror: replace a missing device; detach of the only good source is refused mid-resilver', async () => {
    const p = await makeFiles(dir, 2);
    const cfg0 = await buildRootConfig(parseLayout(['mirror', ...p]));
    const t0 = await VdevTree.open(cfg0);
    const blocks = await writeBlocks(t0.top(0), 15);
    const c = t0.config();
    await t0.close();
    await rm(p[1]!);
    const tree = await VdevTree.open(c);
    expect(tree.state()).toBe('DEGRADED');
    const { leaf, cfg } = await newDevice('new');
    const r = admin.replace(tree, tree.findLeaf(p[1]!)!, leaf, cfg);
    expect(r.readable()).toBe(false);
    await readAll(tree.top(0), blocks, 'normal', 2);
    clean(tree);
    await expect(admin.detach(tree, tree.findLeaf(p[0]!)!)).rejects.toThrow(/no valid replicas/);
    await readAll(tree.top(0), blocks, 'resilver');
    await admin.resilverDone(tree);
    expect(tree.state()).toBe('ONLINE');
    await readAll(tree.top(0), blocks, 'scrub');
    clean(tree);
    await tree.close();
  });

  it('mirror: replace a healthy device, resilver, then lose the other side', async () => {
    const p = await makeFiles(dir, 2);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(['mirror', ...p])));
    const blocks = await writeBlocks(tree.top(0), 15);
    const { leaf, cfg } = await newDevice('new');
    admin.replace(tree, tree.findLeaf(p[1]!)!, leaf, cfg);
    await readAll(tree.top(0), blocks, 'resilver');
    await admin.resilverDone(tree);
    expect(tree.leaves().map((l) => l.path)).toEqual([p[0], cfg.path]);
    tree.findLeaf(p[0]!)!.state = 'FAULTED';
    await readAll(tree.top(0), blocks);
    clean(tree);
    await tree.close();
  });

  it('a single-device top-level can be replaced (the old device is read during resilver)', async () => {
    const p = await makeFiles(dir, 2);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(p)));
    const blocks = await writeBlocks(tree.top(1), 10);
    const { leaf, cfg } = await newDevice('new');
    admin.replace(tree, tree.findLeaf(p[1]!)!, leaf, cfg);
    expect(tree.config().children[1]).toMatchObject({ type: 'replacing', id: 1 });
    await readAll(tree.top(1), blocks, 'resilver');
    await admin.resilverDone(tree);
    expect(tree.config().children[1]).toMatchObject({ type: 'file', id: 1, path: cfg.path });
    await rm(p[1]!);
    await readAll(tree.top(1), blocks);
    await tree.close();
  });
});

describe('hot spares', () => {
  it('a spare takes over a faulted device, then a real replacement releases it', async () => {
    const p = await makeFiles(dir, 4);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(['raidz1', p[0]!, p[1]!, p[2]!, 'spare', p[3]!])));
    const blocks = await writeBlocks(tree.top(0), 15);
    const bad = tree.findLeaf(p[2]!)!;
    bad.state = 'FAULTED';
    expect(admin.availableSpares(tree).map((s) => s.path)).toEqual([p[3]]);
    const sp = admin.activateSpare(tree, bad);
    expect(sp?.kind).toBe('spare');
    expect(admin.availableSpares(tree)).toEqual([]);
    expect(admin.activateSpare(tree, tree.findLeaf(p[1]!)!)).toBeUndefined();
    await readAll(tree.top(0), blocks, 'resilver');
    await admin.resilverDone(tree);
    // The spare stays in place until the device is replaced or detached.
    expect(tree.config().children[0]).toMatchObject({ children: [{}, {}, { type: 'spare' }] });
    tree.findLeaf(p[0]!)!.state = 'FAULTED';
    expect(tree.state()).toBe('DEGRADED');
    await readAll(tree.top(0), blocks); // served by the spare's copy plus parity
    tree.findLeaf(p[0]!)!.state = 'ONLINE';
    const { leaf, cfg } = await newDevice('new');
    admin.replace(tree, bad, leaf, cfg);
    await readAll(tree.top(0), blocks, 'resilver');
    await admin.resilverDone(tree);
    expect(tree.leaves().map((l) => l.path)).toEqual([p[0], p[1], cfg.path]);
    expect(admin.availableSpares(tree).map((s) => s.path)).toEqual([p[3]]);
    await readAll(tree.top(0), blocks, 'scrub');
    await tree.close();
  });
});

describe('offline / online / clear', () => {
  it('offline refuses beyond redundancy; -t is not persisted; online and clear bring devices back', async () => {
    const p = await makeFiles(dir, 3);
    const tree = await VdevTree.open(await buildRootConfig(parseLayout(['raidz1', ...p])));
    const [a, b] = [tree.findLeaf(p[0]!)!, tree.findLeaf(p[1]!)!];
    admin.offline(tree, a, true);
    expect(tree.state()).toBe('DEGRADED');
    expect(() => admin.offline(tree, b)).toThrow(/no valid replicas/);
    expect(JSON.stringify(tree.config())).not.toContain('offline');
    admin.offline(tree, a);
    expect(JSON.stringify(tree.config())).toContain('"offline":true');
    await admin.online(tree, a);
    expect(a.state).toBe('ONLINE');
    b.errors.cksum = 5;
    b.state = 'FAULTED';
    await admin.clear(tree);
    expect(b.state).toBe('ONLINE');
    expect(b.errors.cksum).toBe(0);
    expect(tree.state()).toBe('ONLINE');
    await tree.close();
  });
});

describe('statusTree', () => {
  it('names and nests vdevs like zpool status', async () => {
    const p = await makeFiles(dir, 8);
    const tree = await VdevTree.open(
      await buildRootConfig(parseLayout(['mirror', p[0]!, p[1]!, 'raidz2', p[2]!, p[3]!, p[4]!, p[5]!, 'log', p[6]!, 'spare', p[7]!])),
    );
    const { leaf, cfg } = await newDevice('new');
    admin.replace(tree, tree.findLeaf(p[3]!)!, leaf, cfg);
    tree.findLeaf(p[1]!)!.errors.cksum = 3;
    const { statusTree } = await import('../../../src/pool/vdev/status.js');
    const s = statusTree(tree, 'tank');
    expect(s.pool).toMatchObject({
      name: 'tank',
      state: 'ONLINE',
      children: [
        { name: 'mirror-0', state: 'ONLINE', children: [{ name: p[0] }, { name: p[1], cksum: 3 }] },
        {
          name: 'raidz2-1',
          children: [{ name: p[2] }, { name: 'replacing-1', children: [{ name: p[3] }, { name: cfg.path, note: 'resilvering' }] }, {}, {}],
        },
      ],
    });
    expect(s.logs).toMatchObject([{ name: p[6], state: 'ONLINE' }]);
    expect(s.spares).toMatchObject([{ name: p[7], state: 'AVAIL' }]);
    await tree.close();
  });
});
