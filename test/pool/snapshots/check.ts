/** State checks shared by the snapshot model tests: the engine must read and list exactly what the model says. */
import type { PoolManager } from '../../../src/daemon/services.js';
import type { Pool } from '../../../src/pool/pool.js';
import type { Extent } from '../../../src/device/block-device.js';
import { bpAsize, type BlockPointer } from '../../../src/pool/blkptr.js';
import { BlockTree } from '../../../src/pool/object/tree.js';
import { dnodeFromJson, dnodeToJson } from '../../../src/pool/object/dnode.js';
import { strategyFor } from '../../../src/snapshot/index.js';
import { snapshotUnique, usedByDataset, usedBySnapshots } from '../../../src/pool/dataset/snapshots.js';
import { Volume } from '../../../src/volume/volume.js';
// @ts-expect-error plain JS module shared with the crash child
import { POOL } from './model-lib.mjs';

export interface MSnap {
  name: string;
  data: Buffer;
  holds: Set<string>;
}
export interface MVol {
  bs: number;
  size: number;
  data: Buffer;
  snaps: MSnap[];
  origin: MSnap | null;
}
export interface ModelLike {
  vols: Map<string, MVol>;
  volNames(): string[];
  fullName(s: MSnap): string;
  clonesOf(s: MSnap): string[];
}

function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

async function readWhole(dev: { info(): { size: number }; read(o: number, n: number): Promise<Buffer> }): Promise<Buffer> {
  const size = dev.info().size;
  const out = Buffer.alloc(size);
  const step = 1 << 20;
  for (let o = 0; o < size; o += step) (await dev.read(o, Math.min(step, size - o))).copy(out, o);
  return out;
}

let ZEROES = Buffer.alloc(4 << 20);

/**
 * blockStatus must describe the whole device, in order, and never call
 * "zero" a range that holds data (a copy that skips holes would lose it).
 */
async function checkExtents(dev: { blockStatus(o: number, n: number): Promise<Extent[]> }, want: Buffer, label: string, problems: string[]): Promise<void> {
  let pos = 0;
  while (pos < want.length) {
    const ext = await dev.blockStatus(pos, want.length - pos);
    if (!ext.length) {
      problems.push(`${label}: blockStatus(${pos}) answered nothing`);
      return;
    }
    for (const e of ext) {
      if (e.offset !== pos || e.length <= 0) {
        problems.push(`${label}: blockStatus extent at ${e.offset}+${e.length}, expected one at ${pos}`);
        return;
      }
      if (e.zero || e.hole) {
        const z = want.subarray(e.offset, e.offset + e.length);
        if (ZEROES.length < z.length) ZEROES = Buffer.alloc(z.length);
        const nz = z.equals(ZEROES.subarray(0, z.length)) ? -1 : z.findIndex((x) => x !== 0);
        if (nz >= 0) {
          problems.push(`${label}: blockStatus says ${e.hole ? 'hole' : 'zero'} at ${e.offset}+${e.length}, but byte ${e.offset + nz} is data`);
          return;
        }
      }
      pos += e.length;
    }
  }
}

/** Names, origins, snapshot lists, holds, clones and every byte of every volume and snapshot (and what blockStatus says of them). Returns a list of problems. */
export async function compareState(pool: Pool, model: ModelLike, opts: { data?: boolean } = {}): Promise<string[]> {
  const problems: string[] = [];
  const names = [...pool.dir.datasets.keys()].filter((n) => n !== POOL).sort();
  const want = model.volNames();
  if (JSON.stringify(names) !== JSON.stringify(want)) problems.push(`datasets: engine ${JSON.stringify(names)} model ${JSON.stringify(want)}`);
  for (const n of want) {
    const rec = pool.dir.datasets.get(n);
    if (!rec) continue;
    const mv = model.vols.get(n)!;
    const origin = mv.origin ? model.fullName(mv.origin) : null;
    if ((rec.origin ?? null) !== origin) problems.push(`${n}: origin ${rec.origin} expected ${origin}`);
    const sn = rec.snapshots.map((s) => s.name);
    const msn = mv.snaps.map((s) => s.name);
    if (JSON.stringify(sn) !== JSON.stringify(msn)) problems.push(`${n}: snapshots ${JSON.stringify(sn)} expected ${JSON.stringify(msn)}`);
    for (const s of mv.snaps) {
      const es = rec.snapshots.find((x) => x.name === s.name);
      if (!es) continue;
      const holds = Object.keys(es.holds ?? {}).sort();
      if (JSON.stringify(holds) !== JSON.stringify([...s.holds].sort())) problems.push(`${n}@${s.name}: holds ${holds} expected ${[...s.holds]}`);
      const clones = [...(es.clones ?? [])].sort();
      const mc = model.clonesOf(s);
      if (JSON.stringify(clones) !== JSON.stringify(mc)) problems.push(`${n}@${s.name}: clones ${JSON.stringify(clones)} expected ${JSON.stringify(mc)}`);
    }
    if (opts.data === false) continue;
    const vol = Volume.open(pool, n);
    const got = await readWhole(vol);
    if (!got.equals(mv.data)) problems.push(`${n}: data differs at byte ${firstDiff(got, mv.data)} (size ${got.length} vs ${mv.data.length})`);
    else await checkExtents(vol, mv.data, n, problems);
    for (const s of mv.snaps) {
      if (!rec.snapshots.some((x) => x.name === s.name)) continue;
      // Through the volume's strategy (native: SnapshotDevice; cow, row: a layered view).
      const full = `${n}@${s.name}`;
      const dev = strategyFor(pool, full).openSnapshot(pool, full);
      const sd = await readWhole(dev);
      if (!sd.equals(s.data)) problems.push(`${n}@${s.name}: data differs at byte ${firstDiff(sd, s.data)}`);
      else await checkExtents(dev, s.data, full, problems);
      await dev.close();
    }
  }
  return problems;
}

/** cow and row volumes: each snapshot owns a separate tree (its store or layer). */
function layered(rec: { props: Record<string, string> }): boolean {
  return rec.props['snapmode'] === 'cow' || rec.props['snapmode'] === 'row';
}

/**
 * Space: after a sync, the space map's data bytes equal exactly the distinct
 * blocks reachable from every head and snapshot tree (no leak), and every
 * one of them is allocated (no early free). USED adds up to the pool's data
 * and each head's REFER is its tree. A native snapshot's REFER is its tree;
 * a cow or row snapshot's tree is its own store or layer, which is what its
 * USED (layerUsed) counts, and no block is in two trees.
 */
export async function checkSpace(pool: Pool): Promise<string[]> {
  await pool.txg.syncNow();
  const problems: string[] = [];
  const tree = new BlockTree(pool.io);
  const seen = new Map<string, number>();
  // Which tree reached each block first (cow/row trees never share a block with another).
  const owner = new Map<string, { tree: string; layered: boolean }>();
  let where = { tree: '', layered: false };
  const visit = (bp: BlockPointer) => {
    const key = `${bp.dvas[0]!.vdev}:${bp.dvas[0]!.offset}`;
    seen.set(key, bpAsize(bp));
    const first = owner.get(key);
    if (!first) owner.set(key, where);
    else if (first.layered || where.layered) problems.push(`block ${key} (birth ${bp.birth}) is in ${first.tree} and in ${where.tree}`);
    for (const d of bp.dvas) {
      const a = pool.alloc.allocators[d.vdev]!;
      for (let o = d.offset; o < d.offset + d.asize; o += 4096) {
        if (!a.isAllocated(o, 4096)) {
          problems.push(`live block ${d.vdev}:${o} (birth ${bp.birth}) is free in the allocator`);
          return;
        }
      }
    }
  };
  for (const [name, rec] of pool.dir.datasets) {
    const obj = pool.objects.get(rec.id);
    where = { tree: name, layered: layered(rec) };
    if (obj) await tree.walkAll(obj.dnode, visit);
    for (const s of rec.snapshots) {
      where = { tree: `${name}@${s.name}`, layered: layered(rec) };
      if (s.object) await tree.walkAll(dnodeFromJson(s.object), visit);
    }
  }
  let reachable = 0;
  for (const v of seen.values()) reachable += v;
  // Accounting exact to the block: heads' and snapshots' own bytes add up to the pool's data, and
  // each head and snapshot REFER is its tree.
  let used = 0;
  for (const [name, rec] of pool.dir.datasets) {
    used += usedByDataset(rec) + usedBySnapshots(rec);
    const obj = pool.objects.get(rec.id);
    if (obj) {
      let refer = 0;
      await tree.walkAll(obj.dnode, (bp) => void (refer += bpAsize(bp)));
      if (refer !== rec.referenced) problems.push(`${name}: referenced ${rec.referenced}, tree holds ${refer}`);
    }
    for (const [i, s] of rec.snapshots.entries()) {
      if (!s.object) continue;
      let refer = 0;
      await tree.walkAll(dnodeFromJson(s.object), (bp) => void (refer += bpAsize(bp)));
      if (layered(rec)) {
        if (refer !== (s.layerUsed ?? 0)) problems.push(`${name}@${s.name}: layerUsed ${s.layerUsed}, its ${rec.props['snapmode'] === 'cow' ? 'store' : 'layer'} holds ${refer}`);
        // USED of a cow/row snapshot is its store or layer, nothing else.
        if (snapshotUnique(rec, i) !== refer) problems.push(`${name}@${s.name}: USED ${snapshotUnique(rec, i)}, its own tree holds ${refer}`);
        // The in-memory layer object is the same tree once synced.
        const live = pool.objects.get(s.id);
        if (!live) problems.push(`${name}@${s.name}: layer object not loaded`);
        else if (dnodeToJson(live.dnode).root !== s.object.root) problems.push(`${name}@${s.name}: loaded layer differs from the directory's after a sync`);
      } else if (refer !== s.referenced) problems.push(`${name}@${s.name}: referenced ${s.referenced}, tree holds ${refer}`);
    }
  }
  const logged = pool.logged.reduce((n, a) => n + a.allocatedBytes(), 0);
  if (used !== logged) problems.push(`usedbydataset + usedbysnapshots over all datasets is ${used}, the pool holds ${logged} data bytes`);
  if (logged !== reachable) problems.push(`space map holds ${logged} data bytes, trees reach ${reachable} (${logged > reachable ? 'leak' : 'double free'} of ${Math.abs(logged - reachable)})`);
  return problems.slice(0, 10);
}

/**
 * diff: every block whose bytes differ between a snapshot and the next one
 * (and the head) lies in the diff's ranges. (Diff works from block
 * pointers, so it may also report blocks rewritten with the same bytes.)
 */
export async function checkDiff(mgr: PoolManager, pool: Pool, model: ModelLike): Promise<string[]> {
  const problems: string[] = [];
  for (const n of model.volNames()) {
    const v = model.vols.get(n)!;
    const targets: [string, Buffer][] = v.snaps.map((s) => [`${n}@${s.name}`, s.data]);
    targets.push([n, v.data]);
    for (let i = 0; i < v.snaps.length; i++) {
      for (const j of [i + 1, targets.length - 1]) {
        if (j >= targets.length) continue;
        const [from, a] = targets[i]!;
        const [to, b] = targets[j]!;
        const ranges = await mgr.diff(from, to);
        // cow and row know a block changed, not whether it became a hole: 'M' only.
        const mode = pool.dir.get(n).props['snapmode'];
        if ((mode === 'cow' || mode === 'row') && ranges.some((r) => r.change !== 'M')) problems.push(`diff ${from} ${to}: snapmode=${mode} reports ${[...new Set(ranges.map((r) => r.change))]}`);
        const covered = new Set<number>();
        for (const r of ranges) for (let o = r.offset; o < r.offset + r.length; o += v.bs) covered.add(o / v.bs);
        for (let blk = 0; blk * v.bs < Math.min(a.length, b.length); blk++) {
          const x = a.subarray(blk * v.bs, (blk + 1) * v.bs);
          const y = b.subarray(blk * v.bs, (blk + 1) * v.bs);
          if (!covered.has(blk) && !x.equals(y)) problems.push(`diff ${from} ${to}: block ${blk} differs but is not reported`);
        }
      }
    }
  }
  return problems.slice(0, 10);
}

export type { PoolManager };
