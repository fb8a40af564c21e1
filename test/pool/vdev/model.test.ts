/**
 * Model-based test: random sequences of writes, silent corruption and device
 * failures within redundancy, replacements with resilver, and scrubs, on
 * mirrors and raidz over memory devices, checked against a map of what was
 * written. The model tracks which children may hold damage; operations that
 * would exceed the redundancy are skipped, so every read must succeed.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryLeaf } from '../../../src/pool/vdev/leaf-memory.js';
import type { MirrorVdev } from '../../../src/pool/vdev/mirror.js';
import type { RaidzVdev } from '../../../src/pool/vdev/raidz.js';
import { raidzMap } from '../../../src/pool/vdev/raidz-math.js';
import * as admin from '../../../src/pool/vdev/tree-admin.js';
import { VdevTree } from '../../../src/pool/vdev/tree.js';
import { LEAF_DATA_START, SECTOR, type Leaf, type VdevRootConfig } from '../../../src/pool/vdev/types.js';
import { MiB, verifierFor } from './helpers.js';

type Op =
  | { op: 'write'; sectors: number; seed: number }
  | { op: 'corrupt'; child: number; pick: number; seed: number }
  | { op: 'fail'; child: number }
  | { op: 'replace'; child: number }
  | { op: 'scrub' }
  | { op: 'read'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('write' as const), sectors: fc.integer({ min: 1, max: 20 }), seed: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('corrupt' as const), child: fc.nat(7), pick: fc.nat(), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fail' as const), child: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('replace' as const), child: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'scrub' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('read' as const), pick: fc.nat() }) },
);

const layouts = [
  { name: 'mirror-3', kind: 'mirror' as const, width: 3, tolerance: 2 },
  { name: 'raidz1 x4', kind: 'raidz' as const, width: 4, tolerance: 1 },
  { name: 'raidz2 x5', kind: 'raidz' as const, width: 5, tolerance: 2 },
  { name: 'raidz3 x7', kind: 'raidz' as const, width: 7, tolerance: 3 },
];

function fill(sectors: number, seed: number): Buffer {
  const b = Buffer.alloc(sectors * SECTOR);
  let x = seed | 1;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

describe.each(layouts)('$name against a model', (l) => {
  it('never loses or corrupts data within redundancy', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40 }), async (ops) => {
        const mem = new Map<string, MemoryLeaf>();
        let nextDev = 0;
        const mk = (): { type: 'file'; guid: string; path: string } => ({ type: 'file', guid: `g${nextDev}`, path: `mem${nextDev++}` });
        const children = Array.from({ length: l.width }, mk);
        const cfg: VdevRootConfig = {
          type: 'root',
          guid: 'root',
          children: [l.kind === 'mirror' ? { type: 'mirror', guid: 't', children } : { type: 'raidz', guid: 't', nparity: l.tolerance as 1 | 2 | 3, children }],
        };
        const tree = await VdevTree.open(cfg, {
          openLeaf: async (c) => {
            const m = new MemoryLeaf(c.guid, c.path, 64 * MiB, { probe: false });
            mem.set(c.path, m);
            return m;
          },
        });
        const top = tree.top(0);
        const blocks: { offset: number; data: Buffer }[] = [];
        let end = 0;
        // Children (by slot) that may hold damage not yet repaired.
        const damaged = new Set<number>();
        // The top-level's direct child in slot i (a replacing vdev while a replacement is pending).
        const slotLeaf = (i: number): Leaf => (top as MirrorVdev | RaidzVdev).children[i]!;
        const pending = new Map<number, Leaf>(); // slot -> failed leaf being replaced
        for (const o of ops) {
          if (o.op === 'write') {
            const data = fill(o.sectors, o.seed);
            if (end + top.asize(data.length) > top.capacity) continue;
            await top.write(end, data);
            blocks.push({ offset: end, data });
            end += top.asize(data.length);
          } else if (o.op === 'corrupt' || o.op === 'fail') {
            const child = o.child % l.width;
            if (!damaged.has(child) && damaged.size >= l.tolerance) continue;
            if (pending.has(child)) continue;
            const leaf = slotLeaf(child) as MemoryLeaf;
            if (o.op === 'fail') {
              leaf.state = 'FAULTED';
            } else {
              if (blocks.length === 0) continue;
              const b = blocks[o.pick % blocks.length]!;
              let ranges: [number, number][];
              if (l.kind === 'mirror') ranges = [[LEAF_DATA_START + b.offset, LEAF_DATA_START + b.offset + b.data.length]];
              else {
                const m = raidzMap(b.offset, b.data.length, l.width, l.tolerance);
                ranges = m.cols.slice(0, m.acols).filter((c) => c.devidx === child).map((c) => [LEAF_DATA_START + c.offset, LEAF_DATA_START + c.offset + c.size]);
              }
              if (ranges.length === 0) continue;
              const [s, e] = ranges[o.seed % ranges.length]!;
              const at = s + (o.seed % (e - s));
              leaf.poke(at, Buffer.from([leaf.peek(at, 1)[0]! ^ 0x5a]));
            }
            damaged.add(child);
          } else if (o.op === 'replace') {
            const child = o.child % l.width;
            const leaf = slotLeaf(child);
            if (leaf.state !== 'FAULTED' || pending.has(child)) continue;
            const c = mk();
            const neu = new MemoryLeaf(c.guid, c.path, 64 * MiB, { probe: false });
            mem.set(c.path, neu);
            admin.replace(tree, leaf, neu, c);
            pending.set(child, leaf);
          } else if (o.op === 'scrub') {
            const mode = admin.needsResilver(tree) ? 'resilver' : 'scrub';
            for (const b of blocks) expect((await top.read(b.offset, b.data.length, verifierFor(b.data), { mode })).equals(b.data)).toBe(true);
            await admin.resilverDone(tree);
            pending.clear();
            damaged.clear();
            // Still-faulted devices (never replaced) remain damage.
            for (let i = 0; i < l.width; i++) if (slotLeaf(i).state === 'FAULTED') damaged.add(i);
          } else {
            if (blocks.length === 0) continue;
            const b = blocks[o.pick % blocks.length]!;
            expect((await top.read(b.offset, b.data.length, verifierFor(b.data))).equals(b.data)).toBe(true);
          }
        }
        // Everything reads back at the end.
        for (const b of blocks) expect((await top.read(b.offset, b.data.length, verifierFor(b.data))).equals(b.data)).toBe(true);
        await tree.close();
      }),
      { numRuns: 60 },
    );
  });
});
