/**
 * The snapshot strategy interface: one per snapmode (native, cow, row),
 * chosen per volume at creation (property `snapmode`, pinned then).
 *
 * Administrative side: snapshot, destroy, rollback, clone, promote, reset
 * to origin, diff, and a read-only view of a snapshot. Each either keeps the
 * native promise (atomic, durable on return, refusals before changes) or
 * refuses with one clear line.
 *
 * Write side (WritePath): the volume asks its strategy where data goes.
 * native: nowhere special (the pool's copy-on-write tree is the snapshot
 * mechanism). cow: before a block is first overwritten after a snapshot,
 * its old contents are copied into that snapshot's store, in the same txg
 * as the overwrite. row: writes go to the top layer (the volume's head);
 * blocks the top does not hold are read from the layer an index names.
 */
import type { BlockDevice } from '../device/block-device.js';
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord } from '../pool/dataset/directory.js';
import type { DiffRange } from '../pool/dataset/snapshots.js';
import type { ObjectState } from '../pool/object/object-state.js';

export type SnapMode = 'native' | 'cow' | 'row';

export interface SnapshotStrategy {
  readonly mode: SnapMode;
  /** Take snapshots `vol@name` (all of this strategy), atomically, in one txg. */
  snapshot(pool: Pool, names: string[], command?: string): Promise<void>;
  /** Destroy snapshots (refusals checked by the caller). */
  destroy(pool: Pool, names: string[], command?: string): Promise<void>;
  /** Make the volume identical to the snapshot; later ones go with destroyLater. */
  rollback(pool: Pool, full: string, opts: { destroyLater?: boolean; command?: string }): Promise<void>;
  clone(pool: Pool, full: string, targets: string[], props: Record<string, string>, command?: string): Promise<void>;
  promote(pool: Pool, clone: string, command?: string): Promise<void>;
  resetToOrigin(pool: Pool, vol: string, command?: string): Promise<void>;
  diff(pool: Pool, from: string, to: string): Promise<DiffRange[]>;
  openSnapshot(pool: Pool, full: string): BlockDevice;
  /** The write-path hooks for a volume of this mode (null: plain tree). */
  writePath(pool: Pool, rec: DatasetRecord): WritePath | null;
}

/** Blocks a write must copy out first (cow), read before the write joins its txg. */
export interface Prepared {
  items: { b: number; data: Buffer | null }[];
  /**
   * The store the copies go to (the newest snapshot's): the writer holds
   * room for its indirect blocks too before anything is dirtied.
   */
  store: ObjectState;
}

export interface WritePath {
  /** Entered by every read and write of the volume (see gate.ts). */
  enter(): Promise<void>;
  leave(): void;
  /** Row: does a layer below the head hold block b? */
  hasBelow(b: number): boolean;
  /** Row: contents of blocks from the layers below (null: zeroes). */
  readBelow(ids: number[], forWrite: boolean): Promise<(Buffer | null)[]>;
  /** Cow: read what the blocks about to be written must preserve (outside the txg). */
  prepare(ids: number[]): Promise<Prepared | null>;
  /**
   * Cow: record the copies in txg t, synchronously in the tick that records the write.
   * Returns how many blocks it dirtied (at most p.items.length: another write may have
   * copied some first), which the writer counts as its own dirty data.
   */
  record(p: Prepared | null, t: number): number;
  /**
   * Cow: writes copy what they overwrite into a store. Zeroing a range then dirties
   * as much as writing it (Volume.zeroRange goes through the write path's admission).
   */
  readonly copiesOut: boolean;
  /** Ready before the first I/O (indexes built). */
  ready(): Promise<void>;
}
