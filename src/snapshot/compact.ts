/**
 * Automatic compaction of row chains: after a snapshot makes a row
 * volume's own chain deeper than its `compactdepth`, the oldest layers are
 * merged into their successors (the snapshots they belonged to are
 * destroyed, like a rolling window), oldest first, until the chain is
 * that deep again. Held snapshots and snapshots with clones are never
 * merged; when they block, the chain stays deeper and the next snapshot
 * tries again. Merges keep every remaining view at every batch (row.ts),
 * so a crash mid-compaction loses nothing and the next run finishes it.
 *
 * Reads never needed this (the row index makes depth free per read); it
 * bounds the space and open-time cost of long chains of automatic snapshots.
 */
import type { Pool } from '../pool/pool.js';
import { modeOf } from './index.js';
import { rowStrategy } from './row.js';

/** Compact every named dataset that asks for it; returns the snapshots merged away. */
export async function compactChains(pool: Pool, datasets: string[], command?: string): Promise<string[]> {
  const merged: string[] = [];
  for (const ds of new Set(datasets)) {
    const rec = pool.dir.datasets.get(ds);
    if (!rec || modeOf(rec) !== 'row') continue;
    const depth = Number(pool.dir.propValue(ds, 'compactdepth'));
    if (!depth || rec.snapshots.length <= depth) continue;
    const excess = rec.snapshots.length - depth;
    const victims = rec.snapshots.filter((s) => !Object.keys(s.holds ?? {}).length && !(s.clones ?? []).length).slice(0, excess).map((s) => `${ds}@${s.name}`);
    if (!victims.length) continue;
    await rowStrategy.destroy(pool, victims, command ?? `compact ${ds} to depth ${depth} (${victims.join(',')})`);
    merged.push(...victims);
  }
  return merged;
}
