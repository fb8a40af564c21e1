/**
 * native: ZFS-style snapshots (src/pool/dataset/snapshots.ts): the pool's
 * copy-on-write tree is the mechanism, so the write path needs no hooks.
 */
import {
  clone,
  destroySnapshots,
  diff,
  promote,
  resetClone,
  rollback,
  snapshot,
} from '../pool/dataset/snapshots.js';
import { SnapshotDevice } from '../volume/snapshot-device.js';
import type { SnapshotStrategy } from './strategy.js';

export const nativeStrategy: SnapshotStrategy = {
  mode: 'native',
  snapshot: (pool, names, command) => snapshot(pool, names, command),
  destroy: (pool, names, command) => destroySnapshots(pool, names, command),
  rollback: (pool, full, opts) => rollback(pool, full, opts),
  clone: (pool, full, targets, props, command) => clone(pool, full, targets, props, command),
  promote: (pool, name, command) => promote(pool, name, command),
  resetToOrigin: (pool, vol, command) => resetClone(pool, vol, command),
  diff: (pool, from, to) => diff(pool, from, to),
  openSnapshot: (pool, full) => new SnapshotDevice(pool, full),
  writePath: () => null,
};
