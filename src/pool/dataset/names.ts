/**
 * Dataset and snapshot names, ZFS rules: components of [A-Za-z0-9_.:-]
 * (a pool name starts with a letter), separated by '/', a snapshot suffix
 * after '@', at most 255 characters in all.
 */
import { err } from '../../errors.js';

const COMPONENT = /^[A-Za-z0-9_.:-]+$/;
const POOL = /^[A-Za-z][A-Za-z0-9_.:-]*$/;
const RESERVED_POOL = new Set(['mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3', 'spare', 'log', 'cache', 'draid']);

export function validatePoolName(name: string): void {
  if (!POOL.test(name) || name.length > 200) throw err.inval(`invalid pool name '${name}': must start with a letter and use only letters, digits, '_', '-', '.', ':'`);
  if (RESERVED_POOL.has(name) || /^c[0-9]/.test(name)) throw err.inval(`invalid pool name '${name}': name is reserved`);
}

export function validateDatasetName(name: string): void {
  if (name.length === 0 || name.length > 255) throw err.inval(`invalid dataset name '${name}': length must be 1..255`);
  if (name.includes('@')) throw err.inval(`invalid dataset name '${name}': '@' is only for snapshots`);
  const parts = name.split('/');
  validatePoolName(parts[0]!);
  for (const p of parts.slice(1)) {
    if (!COMPONENT.test(p) || p === '.' || p === '..') throw err.inval(`invalid dataset name '${name}': bad component '${p}'`);
  }
}

export function validateSnapshotName(full: string): void {
  const at = full.indexOf('@');
  if (at < 0) throw err.inval(`invalid snapshot name '${full}': expected DATASET@SNAPSHOT`);
  validateDatasetName(full.slice(0, at));
  const snap = full.slice(at + 1);
  if (!COMPONENT.test(snap) || full.length > 255) throw err.inval(`invalid snapshot name '${full}': bad snapshot component '${snap}'`);
}

export function poolOf(name: string): string {
  return name.split(/[/@]/)[0]!;
}

export function parentOf(name: string): string | null {
  const i = name.lastIndexOf('/');
  return i < 0 ? null : name.slice(0, i);
}
