import { rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildRootConfig, parseLayout, replicationMismatch } from '../../../src/pool/vdev/layout.js';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import { VdevTree } from '../../../src/pool/vdev/tree.js';
import type { VdevRootConfig } from '../../../src/pool/vdev/types.js';
import { makeFiles, MiB, randomBlock, tempDir, verifierFor } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(async () => cleanup());

describe('parseLayout', () => {
  it('follows zpool grammar', () => {
    const s = parseLayout(['mirror', 'a', 'b', 'mirror', 'c', 'd', 'log', 'mirror', 'e', 'f', 'cache', 'g', 'spare', 'h', 'i']);
    expect(s.tops).toEqual([
      { kind: 'mirror', paths: ['a', 'b'] },
      { kind: 'mirror', paths: ['c', 'd'] },
      { kind: 'mirror', paths: ['e', 'f'], log: true },
    ]);
    expect(s.cache).toEqual(['g']);
    expect(s.spares).toEqual(['h', 'i']);
    expect(parseLayout(['a', 'b']).tops).toEqual([
      { kind: 'single', paths: ['a'] },
      { kind: 'single', paths: ['b'] },
    ]);
    expect(parseLayout(['raidz2', 'a', 'b', 'c', 'd']).tops[0]).toEqual({ kind: 'raidz', nparity: 2, paths: ['a', 'b', 'c', 'd'] });
  });
  it('rejects bad layouts with a clear message', () => {
    expect(() => parseLayout(['mirror', 'a'])).toThrow(/mirror requires at least 2 devices/);
    expect(() => parseLayout(['raidz3', 'a', 'b', 'c'])).toThrow(/raidz3 requires at least 4/);
    expect(() => parseLayout(['a', 'a'])).toThrow(/more than once/);
    expect(() => parseLayout(['log', 'a'])).toThrow(/no data devices/);
    expect(() => parseLayout(['a', 'spare', 'mirror', 'b'])).toThrow(/not allowed/);
  });
  it('flags mismatched replication', () => {
    expect(replicationMismatch(parseLayout(['a', 'mirror', 'b', 'c']))).toMatch(/mismatched/);
    expect(replicationMismatch(parseLayout(['raidz', 'a', 'b', 'c', 'raidz', 'd', 'e']))).toMatch(/mismatched/);
    expect(replicationMismatch(parseLayout(['mirror', 'a', 'b', 'mirror', 'c', 'd']))).toBeUndefined();
  });
});

describe('VdevTree', () => {
  it('opens striped single devices, does I/O on each top-level, and round-trips the config', async () => {
    const paths = await makeFiles(dir, 3, 80 * MiB);
    const root = await buildRootConfig(parseLayout(paths));
    const tree = await VdevTree.open(root);
    expect(tree.tops.map((t) => t.id)).toEqual([0, 1, 2]);
    expect(tree.state()).toBe('ONLINE');
    expect(tree.missing()).toEqual([]);
    for (const t of tree.tops) {
      const d = randomBlock(3);
      await t.write(t.capacity - d.length, d);
      expect((await t.read(t.capacity - d.length, d.length, verifierFor(d))).equals(d)).toBe(true);
    }
    await tree.flush();
    const cfg = tree.config();
    expect(cfg.children.map((c) => ('asize' in c ? c.asize : 0))).toEqual(tree.tops.map((t) => t.capacity));
    await tree.close();
    // reopen from the written config: same geometry
    const again = await VdevTree.open(JSON.parse(JSON.stringify(cfg)) as VdevRootConfig);
    expect(again.config()).toEqual(cfg);
    await again.close();
  });

  it('builds mirror and raidz top-levels, with log, spare and cache devices', async () => {
    const p = await makeFiles(dir, 9);
    const root = await buildRootConfig(parseLayout(['mirror', p[0]!, p[1]!, 'raidz2', p[2]!, p[3]!, p[4]!, p[5]!, 'log', p[6]!, 'spare', p[7]!, 'cache', p[8]!]));
    const tree = await VdevTree.open(root);
    expect(tree.tops.map((t) => t.config().type)).toEqual(['mirror', 'raidz', 'file']);
    expect(tree.dataTops().length).toBe(2);
    expect(tree.isLog(tree.top(2))).toBe(true);
    expect(tree.spares.map((l) => l.path)).toEqual([p[7]]);
    expect(tree.l2cache.map((l) => l.path)).toEqual([p[8]]);
    expect(tree.config().spares?.[0]).toMatchObject({ path: p[7] });
    expect(tree.findLeaf(p[3]!)?.path).toBe(p[3]);
    expect(tree.topOf(tree.findLeaf(p[3]!)!)?.id).toBe(1);
    await tree.close();
  });

  it('imports DEGRADED within redundancy, refuses beyond it naming the missing devices', async () => {
    const p = await makeFiles(dir, 4);
    const root = await buildRootConfig(parseLayout(['mirror', p[0]!, p[1]!, 'mirror', p[2]!, p[3]!]));
    const t0 = await VdevTree.open(root);
    const cfg = t0.config();
    await t0.close();
    await rm(p[1]!);
    const t1 = await VdevTree.open(cfg);
    expect(t1.state()).toBe('DEGRADED');
    expect(t1.missing()).toMatchObject([{ path: p[1], state: 'UNAVAIL', top: 0 }]);
    expect(t1.missing()[0]!.reason).toMatch(/ENOENT|no such file/i);
    expect(() => t1.assertUsable('tank')).not.toThrow();
    // capacity comes from the recorded asize even with a child missing
    expect(t1.top(0).capacity).toBe(cfg.children[0]!.type === 'mirror' ? cfg.children[0]!.asize : -1);
    await t1.close();
    await rm(p[0]!);
    const t2 = await VdevTree.open(cfg);
    expect(t2.state()).toBe('UNAVAIL');
    expect(() => t2.assertUsable('tank')).toThrow(new RegExp(`cannot open 'tank'.*${p[0]}.*${p[1]}`));
    await t2.close();
  });

  it('a truncated device is UNAVAIL with a reason; read-only trees refuse writes without counting errors', async () => {
    const p = await makeFiles(dir, 3);
    const cfg = await buildRootConfig(parseLayout(['raidz1', ...p]));
    const t0 = await VdevTree.open(cfg);
    const written = t0.config();
    const d = randomBlock(6);
    await t0.top(0).write(0, d);
    await t0.close();
    await truncate(p[2]!, 40 * MiB);
    const t = await VdevTree.open(written, { readOnly: true });
    expect(t.state()).toBe('DEGRADED');
    expect(t.missing()).toMatchObject([{ path: p[2], state: 'UNAVAIL', reason: expect.stringMatching(/smaller/) }]);
    expect((await t.top(0).read(0, d.length, verifierFor(d))).equals(d)).toBe(true);
    await expect(t.top(0).write(0, d)).rejects.toMatchObject({ code: 'EPERM' });
    await expect(t.leaves()[0]!.pwrite(0, d)).rejects.toMatchObject({ code: 'EPERM' });
    for (const l of t.leaves()) expect(l.errors).toEqual({ read: 0, write: 0, cksum: 0 });
    await t.close();
  });

  it('a single-device stripe with one device gone is UNAVAIL; a missing log only degrades', async () => {
    const p = await makeFiles(dir, 3);
    const cfg = await buildRootConfig(parseLayout([p[0]!, p[1]!, 'log', p[2]!]));
    await rm(p[2]!);
    const t = await VdevTree.open(cfg);
    expect(t.state()).toBe('DEGRADED');
    expect(() => t.assertUsable()).not.toThrow();
    await t.close();
    await rm(p[1]!);
    const u = await VdevTree.open(cfg);
    expect(u.state()).toBe('UNAVAIL');
    expect(() => u.assertUsable()).toThrow(/not enough devices/);
    await u.close();
  });

  it('identify() rejects a device carrying someone else\'s label, resolvePath() relocates devices, offline persists', async () => {
    const p = await makeFiles(dir, 2);
    const cfg = await buildRootConfig(parseLayout(['mirror', p[0]!, p[1]!]));
    const t = await VdevTree.open(cfg, { identify: async (leaf) => leaf.path !== p[0] });
    expect(t.state()).toBe('DEGRADED');
    expect(t.missing()[0]).toMatchObject({ path: p[0], reason: expect.stringMatching(/label/) });
    await t.close();
    const moved = join(dir, 'elsewhere');
    const { rename } = await import('node:fs/promises');
    await rename(p[1]!, moved);
    const u = await VdevTree.open(cfg, { resolvePath: (c) => (c.path === p[1] ? moved : c.path) });
    expect(u.state()).toBe('ONLINE');
    u.findLeaf(p[0]!)!.state = 'OFFLINE';
    const c2 = u.config();
    await u.close();
    expect(c2.children[0]!.type === 'mirror' && c2.children[0]!.children.map((c) => [c.type === 'file' && c.path, c.type === 'file' && c.offline])).toEqual([
      [p[0], true],
      [moved, undefined],
    ]);
    const w = await VdevTree.open(c2);
    expect(w.findLeaf(p[0]!)!.state).toBe('OFFLINE');
    expect(w.state()).toBe('DEGRADED');
    await w.close();
  });

  it('an unsupported config is refused and leaves nothing open', async () => {
    const opened: MemoryLeaf[] = [];
    const leaf = (i: number) => ({ type: 'file' as const, guid: `l${i}`, path: `mem${i}` });
    const cfg: VdevRootConfig = {
      type: 'root',
      guid: '1',
      children: [leaf(0), { type: 'raidz', guid: '2', nparity: 1, children: [leaf(1), { type: 'mirror', guid: '3', children: [leaf(2), leaf(3)] }] }],
    };
    const open = async (c: { guid: string; path: string }) => {
      const m = new MemoryLeaf(c.guid, c.path, 64 * MiB);
      opened.push(m);
      return m;
    };
    await expect(VdevTree.open(cfg, { openLeaf: open })).rejects.toMatchObject({ code: 'ENOTSUP' });
    expect(opened.length).toBeGreaterThan(0);
    for (const m of opened) expect(m.state).toBe('UNAVAIL');
  });

  it('accepts injected leaves (memory, fault) through openLeaf', async () => {
    const cfg: VdevRootConfig = {
      type: 'root',
      guid: '1',
      children: [{ type: 'raidz', guid: '2', nparity: 1, children: [0, 1, 2].map((i) => ({ type: 'file' as const, guid: `l${i}`, path: `mem${i}` })) }],
    };
    const t = await VdevTree.open(cfg, { openLeaf: async (c) => new MemoryLeaf(c.guid, c.path, 64 * MiB) });
    const top = t.top(0);
    expect(top.capacity).toBe(3 * (64 * MiB - 4 * MiB - 512 * 1024));
    const d = randomBlock(5);
    await top.write(0, d);
    expect((await top.read(0, d.length, verifierFor(d))).equals(d)).toBe(true);
    await t.close();
  });
});

describe('state change events', () => {
  it('report a device faulting (for spare activation) but not a clean close', async () => {
    const { FaultLeaf } = await import('../../../src/pool/vdev/fault-leaf.js');
    const { activateSpare } = await import('../../../src/pool/vdev/tree-admin.js');
    const seen: string[] = [];
    const cfg: VdevRootConfig = {
      type: 'root',
      guid: '1',
      children: [{ type: 'mirror', guid: '2', children: [0, 1].map((i) => ({ type: 'file' as const, guid: `l${i}`, path: `mem${i}` })) }],
      spares: [{ type: 'file', guid: 's', path: 'spare' }],
    };
    let tree: VdevTree | undefined;
    tree = await VdevTree.open(cfg, {
      openLeaf: async (c) => new FaultLeaf(new MemoryLeaf(c.guid, c.path, 64 * MiB)),
      events: {
        onStateChange: (leaf, from, to) => {
          seen.push(`${leaf.path}:${from}->${to}`);
          if (to === 'FAULTED' && tree) activateSpare(tree, leaf);
        },
      },
    });
    const d = randomBlock(2);
    await tree.top(0).write(0, d);
    const bad = tree.findLeaf('mem0') as InstanceType<typeof FaultLeaf>;
    bad.inject({ op: 'read', kind: 'error' });
    for (let i = 0; i < 2; i++) expect((await tree.top(0).read(0, d.length, verifierFor(d))).equals(d)).toBe(true);
    expect(seen).toEqual(['mem0:ONLINE->FAULTED']);
    expect(tree.config().children[0]).toMatchObject({ children: [{ type: 'spare' }, {}] });
    await tree.close();
    expect(seen).toEqual(['mem0:ONLINE->FAULTED']);
  });
});
