/**
 * The config entry of a leaf, and how a live leaf is written back into it
 * (path may have moved on import, offline and resilvering are live state).
 */
import type { Leaf, VdevConfig } from './types.js';

export type LeafConfig = Extract<VdevConfig, { type: 'file' | 'disk' }>;

export function isLeafConfig(c: VdevConfig): c is LeafConfig {
  return c.type === 'file' || c.type === 'disk';
}

/** Config of a child leaf as it stands now. Top-level-only fields (id, asize, log) are dropped. */
export function leafConfigOf(leaf: Leaf, base: LeafConfig, resilvering: boolean): LeafConfig {
  const { id: _id, asize: _asize, log: _log, offline: _off, resilvering: _res, ...rest } = base;
  const c: LeafConfig = { ...rest, guid: leaf.guid, path: leaf.path };
  if (leaf.state === 'OFFLINE') c.offline = true;
  if (resilvering) c.resilvering = true;
  return c;
}
