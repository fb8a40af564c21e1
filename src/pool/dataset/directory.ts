/**
 * The dataset directory (ZFS's DSL directory): every dataset's identity,
 * local properties and the dnode of its data, kept as one JSON document in
 * a metadata byte object and rewritten in the txg that changes it.
 *
 * Invariants: names are unique; a dataset's parent exists; the pool's root
 * dataset (named like the pool) always exists and is a filesystem.
 */
import { randomBytes } from 'node:crypto';
import { err } from '../../errors.js';
import type { DnodeJson } from '../object/dnode.js';
import { parentOf } from './names.js';
import { PROPS } from './props.js';
import type { DeadlistJson } from './deadlist.js';

export type DatasetType = 'filesystem' | 'volume';

export interface SnapshotRecord {
  id: number;
  guid: string;
  name: string; // short name after '@'
  createTxg: number;
  creation: number;
  object: DnodeJson | null;
  referenced: number;
  logical: number;
  userProps: Record<string, string>;
  holds: Record<string, number>;
  /** Blocks the previous snapshot referenced and this one does not (see deadlist.ts). */
  dead?: DeadlistJson;
  /** Datasets cloned from this snapshot. */
  clones?: string[];
  /** Bytes born since the previous snapshot that this snapshot references (written@prev). */
  written?: number;
  /** The head's originShared when this snapshot was taken (clones). */
  originShared?: number;
  /** cow/row volumes: allocated bytes of this snapshot's own store or layer (src/snapshot). */
  layerUsed?: number;
}

export interface DatasetRecord {
  id: number;
  guid: string;
  type: DatasetType;
  creation: number;
  createTxg: number;
  props: Record<string, string>;
  /** Volumes: the data object. */
  object: DnodeJson | null;
  /** Allocated bytes (all copies) referenced by the head. */
  referenced: number;
  /** Logical (uncompressed) bytes referenced by the head. */
  logical: number;
  /** Oldest first. */
  snapshots: SnapshotRecord[];
  /** Clones: 'vol@snap' they were cloned from. */
  origin?: string | null;
  /** Txg of the origin snapshot (clones), else 0: blocks born at or before it are the origin's. */
  originTxg?: number;
  /** Txg of the latest snapshot (or originTxg): kills of blocks born at or before it go to the dead list. */
  prevSnapTxg?: number;
  dead?: DeadlistJson;
  /** Bytes referenced by the head that were born since the latest snapshot (`written`). */
  written?: number;
  /** Clones: bytes the head still shares with its origin (born at or before originTxg). */
  originShared?: number;
}

export interface DirectoryJson {
  version: number;
  nextId: number;
  datasets: Record<string, DatasetRecord>;
}

export class Directory {
  datasets = new Map<string, DatasetRecord>();
  nextId = 1;
  /** Set whenever the document must be rewritten in the open txg. */
  dirty = false;

  static fromJson(j: DirectoryJson): Directory {
    const d = new Directory();
    d.nextId = j.nextId;
    for (const [k, v] of Object.entries(j.datasets)) d.datasets.set(k, v);
    return d;
  }

  toJson(): DirectoryJson {
    return { version: 1, nextId: this.nextId, datasets: Object.fromEntries(this.datasets) };
  }

  get(name: string): DatasetRecord {
    const r = this.datasets.get(name);
    if (!r) throw err.noent(`dataset '${name}' does not exist`);
    return r;
  }

  has(name: string): boolean {
    return this.datasets.has(name);
  }

  add(name: string, type: DatasetType, txg: number, props: Record<string, string>, object: DnodeJson | null): DatasetRecord {
    if (this.datasets.has(name)) throw err.exist(`dataset '${name}' already exists`);
    const parent = parentOf(name);
    if (parent !== null) {
      const p = this.datasets.get(parent);
      if (!p) throw err.noent(`parent dataset '${parent}' does not exist`);
      if (p.type === 'volume') throw err.inval(`parent '${parent}' is a volume; volumes cannot have children`);
    }
    const rec: DatasetRecord = {
      id: this.nextId++,
      guid: randomBytes(8).toString('hex'),
      type,
      creation: Date.now(),
      createTxg: txg,
      props,
      object,
      referenced: 0,
      logical: 0,
      snapshots: [],
      origin: null,
    };
    this.datasets.set(name, rec);
    this.dirty = true;
    return rec;
  }

  children(name: string): string[] {
    const prefix = name + '/';
    return [...this.datasets.keys()].filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).sort();
  }

  descendants(name: string): string[] {
    const prefix = name + '/';
    return [...this.datasets.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  /**
   * Effective value of a property: resolve(name, prop).value without building its source
   * (every guest I/O asks a few: readonly, copies, sync).
   */
  propValue(name: string, prop: string): string {
    const at = this.setAt(name, prop);
    if (at !== null) return this.datasets.get(at)!.props[prop]!;
    const def = PROPS[prop];
    return def ? def.default : '-';
  }

  /** Effective value and source of a settable property. */
  resolve(name: string, prop: string): { value: string; source: string } {
    const at = this.setAt(name, prop);
    if (at !== null) return { value: this.datasets.get(at)!.props[prop]!, source: at === name ? 'local' : `inherited from ${at}` };
    const def = PROPS[prop];
    return def ? { value: def.default, source: 'default' } : { value: '-', source: '-' };
  }

  /**
   * The dataset whose own props set `prop` for `name`: name itself, or the nearest ancestor
   * for properties that inherit (user properties all do); null when the default applies.
   */
  private setAt(name: string, prop: string): string | null {
    const def = PROPS[prop];
    let cur: string | null = name;
    while (cur !== null) {
      const rec = this.datasets.get(cur);
      if (rec && prop in rec.props) return cur;
      if (def && !def.inherit) return null;
      cur = parentOf(cur);
    }
    return null;
  }

  rename(from: string, to: string): void {
    const moved = [from, ...this.descendants(from)];
    for (const old of moved) {
      const rec = this.datasets.get(old)!;
      this.datasets.delete(old);
      this.datasets.set(to + old.slice(from.length), rec);
    }
    for (const rec of this.datasets.values()) {
      if (rec.origin && (rec.origin.startsWith(from + '@') || rec.origin.startsWith(from + '/'))) rec.origin = to + rec.origin.slice(from.length);
      // Origin snapshots name their clones: renamed clones must stay destroyable and listed.
      for (const s of rec.snapshots) {
        if (s.clones?.length) s.clones = s.clones.map((c) => (c === from || c.startsWith(from + '/') ? to + c.slice(from.length) : c));
      }
    }
    this.dirty = true;
  }
}
