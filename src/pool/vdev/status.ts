/**
 * The config section of `zpool status` as data: one row per vdev with NAME,
 * STATE, READ, WRITE, CKSUM, nested like the device tree. The CLI and the
 * HTTP API format it; nothing here prints.
 *
 * Names follow zpool: leaves by path, interior vdevs `mirror-N`,
 * `raidzP-N` (N the top-level id), `replacing-N`/`spare-N` (N the child
 * index); logs, cache and spares in their own sections, spares AVAIL/INUSE.
 * Interior vdevs have no counters of their own here (errors are counted on
 * the devices that produced them).
 */
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import { ReplacingLeaf } from './replacing.js';
import { SingleVdev } from './single.js';
import { spareInUse } from './tree-admin.js';
import type { VdevTree } from './tree.js';
import type { Leaf, TopVdev, VdevState } from './types.js';

export interface VdevStatusRow {
  name: string;
  state: VdevState | 'AVAIL' | 'INUSE';
  read: number;
  write: number;
  cksum: number;
  guid: string;
  /** Leaves only. */
  path?: string;
  /** e.g. "resilvering", "was /dev/sdb" — shown after the counters. */
  note?: string;
  children: VdevStatusRow[];
}

export interface PoolStatusTree {
  pool: VdevStatusRow;
  logs: VdevStatusRow[];
  cache: VdevStatusRow[];
  spares: VdevStatusRow[];
}

function leafRow(l: Leaf, stale: boolean): VdevStatusRow {
  const row: VdevStatusRow = { name: l.path, state: l.state, read: l.errors.read, write: l.errors.write, cksum: l.errors.cksum, guid: l.guid, path: l.path, children: [] };
  if (stale && (l.state === 'ONLINE' || l.state === 'DEGRADED')) row.note = 'resilvering';
  return row;
}

function childRow(c: Leaf, index: number, stale: Set<Leaf>): VdevStatusRow {
  if (c instanceof ReplacingLeaf) {
    return {
      name: `${c.kind}-${index}`,
      state: c.state,
      read: 0,
      write: 0,
      cksum: 0,
      guid: c.guid,
      children: c.members.map((m) => leafRow(m, c.stale.has(m))),
    };
  }
  return leafRow(c, stale.has(c));
}

function topRow(t: TopVdev): VdevStatusRow {
  if (t instanceof SingleVdev) return childRow(t.leaf, t.id, new Set());
  const kids = (t as MirrorVdev | RaidzVdev).children;
  const stale = new Set((t as MirrorVdev | RaidzVdev).resilveringChildren());
  const name = t instanceof RaidzVdev ? `raidz${t.nparity}-${t.id}` : `mirror-${t.id}`;
  return { name, state: t.state(), read: 0, write: 0, cksum: 0, guid: t.guid, children: kids.map((c, i) => childRow(c, i, stale)) };
}

export function statusTree(tree: VdevTree, poolName: string): PoolStatusTree {
  const data = tree.dataTops();
  return {
    pool: { name: poolName, state: tree.state(), read: 0, write: 0, cksum: 0, guid: tree.guid, children: data.map(topRow) },
    logs: tree.tops.filter((t) => tree.isLog(t)).map(topRow),
    cache: tree.l2cache.map((l) => leafRow(l, false)),
    spares: tree.spares.map((s) => {
      const row = leafRow(s, false);
      if (s.state === 'ONLINE') row.state = spareInUse(tree, s) ? 'INUSE' : 'AVAIL';
      return row;
    }),
  };
}
