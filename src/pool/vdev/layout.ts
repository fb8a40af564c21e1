/**
 * From `pool create` arguments to a device-tree config:
 *   [mirror|raidz|raidz1|raidz2|raidz3] DEV... [log ...] [cache DEV...] [spare DEV...]
 * with zpool's grammar: a keyword opens a group that runs to the next keyword;
 * devices outside a group are single-device top-levels; after `log`, groups
 * and devices are log top-levels.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { resolve } from 'node:path';
import { err } from '../../errors.js';
import type { LeafConfig } from './leaf-config.js';
import type { VdevConfig, VdevRootConfig } from './types.js';

export interface TopSpec {
  kind: 'single' | 'mirror' | 'raidz';
  nparity?: 1 | 2 | 3;
  paths: string[];
  log?: boolean;
}

export interface LayoutSpec {
  tops: TopSpec[];
  spares: string[];
  cache: string[];
}

const GROUPS: Record<string, { kind: 'mirror' | 'raidz'; nparity?: 1 | 2 | 3 }> = {
  mirror: { kind: 'mirror' },
  raidz: { kind: 'raidz', nparity: 1 },
  raidz1: { kind: 'raidz', nparity: 1 },
  raidz2: { kind: 'raidz', nparity: 2 },
  raidz3: { kind: 'raidz', nparity: 3 },
};

/** Parse the device arguments of `pool create` / `pool add`. Throws EINVAL with a one-line reason. */
export function parseLayout(args: string[]): LayoutSpec {
  const spec: LayoutSpec = { tops: [], spares: [], cache: [] };
  let section: 'data' | 'log' | 'cache' | 'spare' = 'data';
  let group: TopSpec | undefined;
  const close = (): void => {
    if (!group) return;
    const min = group.kind === 'mirror' ? 2 : (group.nparity ?? 1) + 1;
    if (group.paths.length < min) {
      const name = group.kind === 'mirror' ? 'mirror' : `raidz${group.nparity}`;
      throw err.inval(`${name} requires at least ${min} devices, got ${group.paths.length}`);
    }
    spec.tops.push(group);
    group = undefined;
  };
  for (const a of args) {
    if (a === 'log' || a === 'cache' || a === 'spare') {
      close();
      section = a;
      continue;
    }
    const g = GROUPS[a];
    if (g) {
      if (section === 'cache' || section === 'spare') throw err.inval(`'${a}' is not allowed among ${section} devices`);
      close();
      group = { kind: g.kind, paths: [], ...(g.nparity ? { nparity: g.nparity } : {}), ...(section === 'log' ? { log: true } : {}) };
      if (section === 'log' && g.kind === 'raidz') throw err.inval('log devices can be single devices or mirrors, not raidz');
      continue;
    }
    if (section === 'cache') spec.cache.push(a);
    else if (section === 'spare') spec.spares.push(a);
    else if (group) group.paths.push(a);
    else spec.tops.push({ kind: 'single', paths: [a], ...(section === 'log' ? { log: true } : {}) });
  }
  close();
  if (spec.tops.filter((t) => !t.log).length === 0) throw err.inval('no data devices given');
  const all = [...spec.tops.flatMap((t) => t.paths), ...spec.spares, ...spec.cache].map((p) => resolve(p));
  const dup = all.find((p, i) => all.indexOf(p) !== i);
  if (dup !== undefined) throw err.inval(`device '${dup}' is named more than once`);
  return spec;
}

/**
 * zpool's "mismatched replication level" check: data top-levels should share
 * one layout and parity. Returns a message to show (and require -f), or undefined.
 */
export function replicationMismatch(spec: LayoutSpec): string | undefined {
  const data = spec.tops.filter((t) => !t.log);
  const key = (t: TopSpec): string => (t.kind === 'mirror' ? `mirror` : t.kind === 'raidz' ? `raidz${t.nparity}` : 'single');
  const kinds = new Set(data.map(key));
  if (kinds.size > 1) return `mismatched replication level: pool uses ${[...kinds].join(' and ')} vdevs (use -f to override)`;
  const widths = new Set(data.filter((t) => t.kind !== 'single').map((t) => t.paths.length));
  if (widths.size > 1) return `mismatched replication level: ${[...kinds][0]} vdevs of ${[...widths].join(' and ')} devices (use -f to override)`;
  return undefined;
}

/** A random 64-bit guid as a decimal string (ZFS prints guids that way). */
export function newGuid(): string {
  let g = randomBytes(8).readBigUInt64BE();
  if (g === 0n) g = 1n;
  return g.toString();
}

/** Leaf config for a path: 'disk' for a block device, else 'file'. Paths are made absolute. */
export async function leafConfigFor(path: string, guid = newGuid()): Promise<LeafConfig> {
  const abs = resolve(path);
  let isDisk = false;
  try {
    isDisk = (await fsp.stat(abs)).isBlockDevice();
  } catch {
    // Missing paths are reported when the leaf is opened.
  }
  return isDisk ? { type: 'disk', guid, path: abs, whole: true } : { type: 'file', guid, path: abs };
}

/** Build a fresh root config (new guids, ids in order) from a parsed layout. */
export async function buildRootConfig(spec: LayoutSpec, rootGuid = newGuid()): Promise<VdevRootConfig> {
  const children: VdevConfig[] = [];
  for (const [id, t] of spec.tops.entries()) {
    const leaves = await Promise.all(t.paths.map((p) => leafConfigFor(p)));
    const extra = t.log ? { log: true } : {};
    if (t.kind === 'single') children.push({ ...leaves[0]!, id, ...extra });
    else if (t.kind === 'mirror') children.push({ type: 'mirror', guid: newGuid(), id, children: leaves, ...extra });
    else children.push({ type: 'raidz', guid: newGuid(), id, nparity: t.nparity ?? 1, children: leaves, ...extra });
  }
  const root: VdevRootConfig = { type: 'root', guid: rootGuid, children };
  if (spec.spares.length > 0) root.spares = await Promise.all(spec.spares.map((p) => leafConfigFor(p)));
  if (spec.cache.length > 0) root.l2cache = await Promise.all(spec.cache.map((p) => leafConfigFor(p)));
  return root;
}
