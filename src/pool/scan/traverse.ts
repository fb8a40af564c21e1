/**
 * Traversal of every allocated block of a pool, in a fixed order so a scan
 * can stop anywhere and resume from a bookmark (ZFS's traverse / dsl_scan):
 *
 *   pool metadata (ds 0: MOS root, directory, space map, history, dead-list
 *   storage), then each dataset by id: its snapshots oldest first, then the
 *   head; inside one tree, level-0 blkid order (indirect blocks just before
 *   the first block they cover).
 *
 * Every block is visited exactly once: a block is first referenced by the
 * snapshot (or head) whose txg interval (previous snapshot's txg, own txg]
 * holds its birth; earlier ones are visited through that tree only, because
 * walks skip subtrees born at or before the previous snapshot (or a clone's
 * origin). `minBirth` (resilver by DTL) raises that bound.
 *
 * The traversal hands back chunks of block pointers; the caller reads them
 * before asking for the next chunk (see runner.ts for the free-hold that keeps
 * a chunk's blocks from being reused while they are read).
 */
import { decodeBp, isHole, type BlockPointer } from '../blkptr.js';
import type { BlockPipeline } from '../io/pipeline.js';
import { dnodeFromJson, IND_FANOUT, type Dnode } from '../object/dnode.js';
import { byteObjectFromJson } from '../object/byte-object.js';
import { BlockTree } from '../object/tree.js';
import type { Pool } from '../pool.js';
import { HEAD_PART, type Bookmark } from './state.js';

export interface ScanItem {
  bp: BlockPointer;
  /** Dataset id (0 for pool metadata). */
  ds: number;
  part: number;
  /** First level-0 block this block covers. */
  blkid: number;
  level: number;
  /** Level-0 blocks covered. */
  span: number;
}

export interface Chunk {
  items: ScanItem[];
  /** Bookmark to continue from once every item is done; null when the pool is done. */
  next: Bookmark | null;
}

const spanAt = (level: number): number => Math.pow(IND_FANOUT, level);

interface Part {
  part: number;
  dnode: Dnode | null;
  after: number;
}

/** The trees of one dataset in traversal order, with the birth bound each one is walked above. */
export function partsOf(pool: Pool, dsId: number, minBirth: number): Part[] {
  const name = pool.nameOfId(dsId);
  if (name === undefined) return [];
  const rec = pool.dir.datasets.get(name)!;
  const out: Part[] = [];
  let prev = rec.originTxg ?? 0;
  // cow/row snapshots own separate trees (src/snapshot): nothing is shared by birth, walk each whole.
  const layered = rec.props['snapmode'] === 'cow' || rec.props['snapmode'] === 'row';
  for (const s of [...rec.snapshots].sort((a, b) => a.createTxg - b.createTxg)) {
    const live = layered ? pool.objects.get(s.id)?.dnode : undefined;
    out.push({ part: s.createTxg, dnode: live ?? (s.object ? dnodeFromJson(s.object) : null), after: layered ? minBirth : Math.max(prev, minBirth) });
    prev = s.createTxg;
  }
  const obj = pool.objects.get(rec.id);
  out.push({ part: HEAD_PART, dnode: obj ? obj.dnode : null, after: layered ? minBirth : Math.max(prev, minBirth) });
  return out;
}

/** Metadata blocks (born after minBirth): small, visited as one chunk. */
export async function metadataItems(pool: Pool, minBirth: number): Promise<ScanItem[]> {
  const items: ScanItem[] = [];
  const add = (bp: BlockPointer): void => {
    if (bp.birth > minBirth) items.push({ bp, ds: 0, part: 0, blkid: 0, level: bp.level, span: 1 });
  };
  if (pool.mos.rootBp) add(pool.mos.rootBp);
  const tree = new BlockTree(pool.io);
  for (const o of [pool.mos.dir, pool.mos.sm, pool.mos.history]) await tree.walkBorn(o.dnode, minBirth, add);
  for (const rec of pool.dir.datasets.values()) {
    for (const dl of [rec.dead, ...rec.snapshots.map((s) => s.dead)]) {
      if (dl && dl.count > 0) await tree.walkBorn(byteObjectFromJson(dl.obj).dnode, minBirth, add);
    }
  }
  return items;
}

/**
 * Up to `max` level-0 blocks (and the indirect blocks above them) of a tree
 * from blkid `from` on, born after `after`. `next` is the blkid to continue
 * from, or null when the tree is done. Indirect blocks that cannot be read
 * are reported through `onError` and their subtree skipped.
 */
export async function collectTree(
  io: BlockPipeline,
  d: Dnode,
  after: number,
  from: number,
  max: number,
  onError: (bp: BlockPointer, blkid: number, level: number, e: unknown) => void,
): Promise<{ items: { bp: BlockPointer; blkid: number; level: number; span: number }[]; next: number | null }> {
  const items: { bp: BlockPointer; blkid: number; level: number; span: number }[] = [];
  let next: number | null = null;
  let l0 = 0;
  if (isHole(d.root) || d.root!.birth <= after) return { items, next };
  const end = Math.min(d.nblocks, spanAt(d.levels));
  const rec = async (bp: BlockPointer, level: number, base: number): Promise<void> => {
    if (next !== null) return;
    const span = spanAt(level);
    if (base + span <= from || base >= end) return;
    if (l0 >= max) {
      next = Math.max(base, from);
      return;
    }
    if (level === 0) {
      items.push({ bp, blkid: base, level, span: 1 });
      l0++;
      return;
    }
    if (base >= from) items.push({ bp, blkid: base, level, span });
    let ind: Buffer;
    try {
      ind = await io.read(bp);
    } catch (e) {
      onError(bp, base, level, e);
      return;
    }
    const childSpan = spanAt(level - 1);
    for (let i = 0; i < IND_FANOUT && next === null; i++) {
      const cb = base + i * childSpan;
      if (cb + childSpan <= from) continue;
      if (cb >= end) break;
      const child = decodeBp(ind, i * 128);
      if (!isHole(child) && child!.birth > after) await rec(child!, level - 1, cb);
    }
  };
  await rec(d.root!, d.levels, 0);
  return { items, next };
}

/**
 * The next chunk after bookmark `at` (ds 0 = metadata first). Datasets are
 * taken in id order; a dataset or snapshot created or destroyed during the
 * scan is simply found or not found when the traversal gets there.
 */
export async function nextChunk(
  pool: Pool,
  at: Bookmark,
  minBirth: number,
  max: number,
  onError: (item: ScanItem, e: unknown) => void,
): Promise<Chunk> {
  if (at.ds === 0) {
    const items = await metadataItems(pool, minBirth);
    return { items, next: { ds: 1, part: 0, blkid: 0 } };
  }
  const ids = [...pool.dir.datasets.values()].map((r) => r.id).filter((id) => id >= at.ds).sort((a, b) => a - b);
  let bm = { ...at };
  for (const id of ids) {
    if (id > bm.ds) bm = { ds: id, part: 0, blkid: 0 };
    for (const p of partsOf(pool, id, minBirth)) {
      if (p.part < bm.part) continue;
      const from = p.part === bm.part ? bm.blkid : 0;
      if (!p.dnode) continue;
      const r = await collectTree(pool.io, p.dnode, p.after, from, max, (bp, blkid, level, e) =>
        onError({ bp, ds: id, part: p.part, blkid, level, span: spanAt(level) }, e),
      );
      const items = r.items.map((x) => ({ ...x, ds: id, part: p.part }));
      if (r.next !== null) return { items, next: { ds: id, part: p.part, blkid: r.next } };
      if (items.length) return { items, next: { ds: id, part: p.part + 1, blkid: 0 } };
    }
    bm = { ds: id + 1, part: 0, blkid: 0 };
  }
  return { items: [], next: null };
}
