/**
 * Shared harness for mirror/raidz tests over real temp files: build a
 * top-level with VdevTree, write random blocks, corrupt leaf files directly.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { open } from 'node:fs/promises';
import { buildRootConfig, parseLayout } from '../../../src/pool/vdev/layout.js';
import { raidzMap } from '../../../src/pool/vdev/raidz-math.js';
import { VdevTree, type OpenTreeOptions } from '../../../src/pool/vdev/tree.js';
import { LEAF_DATA_START, SECTOR, type TopVdev, type VdevRootConfig } from '../../../src/pool/vdev/types.js';
import { makeFiles, verifierFor } from './helpers.js';

export interface Layout {
  name: string;
  kind: 'mirror' | 'raidz';
  width: number;
  nparity: number; // failures tolerated (mirror: width - 1)
}

export const LAYOUTS: Layout[] = [
  { name: 'mirror-2', kind: 'mirror', width: 2, nparity: 1 },
  { name: 'mirror-3', kind: 'mirror', width: 3, nparity: 2 },
  { name: 'raidz1 x3', kind: 'raidz', width: 3, nparity: 1 },
  { name: 'raidz1 x5', kind: 'raidz', width: 5, nparity: 1 },
  { name: 'raidz2 x4', kind: 'raidz', width: 4, nparity: 2 },
  { name: 'raidz2 x6', kind: 'raidz', width: 6, nparity: 2 },
  { name: 'raidz3 x8', kind: 'raidz', width: 8, nparity: 3 },
];

export interface Block {
  offset: number;
  data: Buffer;
}

export interface Rig {
  tree: VdevTree;
  top: TopVdev;
  paths: string[];
  cfg: VdevRootConfig;
}

export async function buildRig(dir: string, l: Layout, opts: OpenTreeOptions = {}): Promise<Rig> {
  const paths = await makeFiles(dir, l.width);
  const kw = l.kind === 'mirror' ? 'mirror' : `raidz${l.nparity}`;
  const cfg = await buildRootConfig(parseLayout([kw, ...paths]));
  const tree = await VdevTree.open(cfg, opts);
  return { tree, top: tree.top(0), paths, cfg: tree.config() };
}

/** Write `n` random blocks of 1..maxSectors sectors, packed with the top-level's asize (as an allocator would). */
export async function writeBlocks(top: TopVdev, n: number, maxSectors = 40, start = 0): Promise<Block[]> {
  const blocks: Block[] = [];
  let off = start;
  for (let i = 0; i < n; i++) {
    const data = randomBytes(randomInt(1, maxSectors + 1) * SECTOR);
    blocks.push({ offset: off, data });
    off += top.asize(data.length);
    // leave occasional gaps so blocks start on every child
    off += randomInt(0, 3) * SECTOR;
  }
  await Promise.all(blocks.map((b) => top.write(b.offset, b.data)));
  await top.flush();
  return blocks;
}

/** Leaf-file byte ranges holding block `b` on child `child` ([start, end) file offsets). `parity` includes raidz parity columns. */
export function regionsOn(l: Layout, b: Block, child: number, parity: boolean): [number, number][] {
  if (l.kind === 'mirror') return [[LEAF_DATA_START + b.offset, LEAF_DATA_START + b.offset + b.data.length]];
  const m = raidzMap(b.offset, b.data.length, l.width, l.nparity);
  const out: [number, number][] = [];
  for (let c = parity ? 0 : l.nparity; c < m.acols; c++) {
    const col = m.cols[c]!;
    if (col.devidx === child) out.push([LEAF_DATA_START + col.offset, LEAF_DATA_START + col.offset + col.size]);
  }
  return out;
}

export interface Damage {
  path: string;
  start: number;
  end: number;
  pristine: Buffer;
}

/** Flip random bytes in a random sub-range of [start, end) of a file; returns the pristine region. */
export async function corrupt(path: string, start: number, end: number): Promise<Damage> {
  const fh = await open(path, 'r+');
  try {
    const pristine = Buffer.alloc(end - start);
    await fh.read(pristine, 0, pristine.length, start);
    const a = randomInt(0, end - start);
    const len = randomInt(1, Math.min(end - start - a, 3000) + 1);
    const bad = Buffer.from(pristine.subarray(a, a + len));
    for (let i = 0; i < bad.length; i++) bad[i] = bad[i]! ^ randomInt(1, 256);
    await fh.write(bad, 0, bad.length, start + a);
    await fh.sync();
    return { path, start, end, pristine };
  } finally {
    await fh.close();
  }
}

export async function readRegion(path: string, start: number, end: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(end - start);
    await fh.read(b, 0, b.length, start);
    return b;
  } finally {
    await fh.close();
  }
}

/** Read every block (each `times` times in a row) and check it. */
export async function readAll(top: TopVdev, blocks: Block[], mode?: 'normal' | 'scrub' | 'resilver', times = 1): Promise<void> {
  for (const b of blocks) {
    for (let t = 0; t < times; t++) {
      const got = await top.read(b.offset, b.data.length, verifierFor(b.data), mode ? { mode } : {});
      if (!got.equals(b.data)) throw new Error(`block at ${b.offset} read back wrong`);
    }
  }
}

/** First offset past the blocks. */
export function endOf(top: TopVdev, blocks: Block[]): number {
  return Math.max(0, ...blocks.map((b) => b.offset + top.asize(b.data.length)));
}
