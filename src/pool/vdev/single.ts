/**
 * SingleVdev: a top-level vdev that is one leaf (`pool create tank /dev/sdb`).
 *
 * Address space: top-level offset X lives at leaf offset LEAF_DATA_START + X;
 * capacity is the leaf's data area in whole sectors (or the asize recorded at
 * creation, so a larger replacement device does not move the end).
 *
 * No redundancy: a read error or a checksum mismatch is EIO (the pool engine
 * may still have a ditto copy on another DVA). Mismatches are counted as CKSUM
 * errors on the leaf, read/write errors by the leaf itself.
 */
import { err } from '../../errors.js';
import { leafUsable } from './leaf-base.js';
import { checkTopRange, leafDataBytes, roundUp, topCapacity, type VdevEvents } from './child-io.js';
import { childNeedsResilver, realLeaves, ReplacingLeaf } from './replacing.js';
import { LEAF_DATA_START, SECTOR, type Leaf, type ReadOptions, type TopVdev, type VdevConfig, type VdevState, type Verify } from './types.js';

export interface SingleVdevOptions {
  id: number;
  /** The leaf's config entry (type file/disk, path, flags) — echoed back by config(). */
  config: Extract<VdevConfig, { type: 'file' | 'disk' }>;
  events?: VdevEvents;
  /** Pool imported read-only: writes are refused with EPERM. */
  readOnly?: boolean;
}

const NONE = new Set<Leaf>();

export class SingleVdev implements TopVdev {
  readonly id: number;
  readonly capacity: number;
  readonly dataRatio = 1;
  private cfg: Extract<VdevConfig, { type: 'file' | 'disk' }>;
  private readonly events: VdevEvents;
  private readonly readOnly: boolean;

  constructor(
    public leaf: Leaf,
    opts: SingleVdevOptions,
  ) {
    this.id = opts.id;
    this.cfg = opts.config;
    this.events = opts.events ?? {};
    this.readOnly = opts.readOnly === true;
    const have = leafDataBytes(leaf.size);
    this.capacity = topCapacity(opts.config.asize, have);
    // A device smaller than the space the pool already addresses would lose
    // data at its end: treat it as unusable (ZFS: "device too small").
    if (leafUsable(leaf.state) && have < this.capacity) leaf.state = 'UNAVAIL';
  }

  /** A single-device top-level is its leaf (or the replacing/spare vdev standing in for it). */
  get guid(): string {
    return this.leaf.guid;
  }

  /** The config entry of the (original) leaf. */
  leafConfig(): Extract<VdevConfig, { type: 'file' | 'disk' }> {
    return this.cfg;
  }

  asize(psize: number): number {
    return roundUp(psize, SECTOR);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    checkTopRange(`vdev ${this.id}`, offset, data.length, this.capacity);
    if (this.readOnly) throw err.perm(`vdev ${this.id}: pool is read-only`);
    if (!leafUsable(this.leaf.state)) throw err.io(`vdev ${this.id} (${this.leaf.path}) is ${this.leaf.state}`);
    try {
      await this.leaf.pwrite(LEAF_DATA_START + offset, data);
    } catch (e) {
      throw err.io(`write to ${this.leaf.path} failed`, e);
    }
  }

  /** Adjacent blocks in one pwritev (no copy into one big buffer). */
  async writev(offset: number, data: Buffer[]): Promise<void> {
    let len = 0;
    for (const b of data) len += b.length;
    checkTopRange(`vdev ${this.id}`, offset, len, this.capacity);
    if (this.readOnly) throw err.perm(`vdev ${this.id}: pool is read-only`);
    if (!leafUsable(this.leaf.state)) throw err.io(`vdev ${this.id} (${this.leaf.path}) is ${this.leaf.state}`);
    try {
      await this.leaf.pwrite(LEAF_DATA_START + offset, data);
    } catch (e) {
      throw err.io(`write to ${this.leaf.path} failed`, e);
    }
  }

  async read(offset: number, psize: number, verify: Verify, opts: ReadOptions = {}): Promise<Buffer> {
    checkTopRange(`vdev ${this.id}`, offset, psize, this.capacity);
    if (!leafUsable(this.leaf.state)) throw err.io(`vdev ${this.id} (${this.leaf.path}) is ${this.leaf.state}`);
    let data: Buffer;
    try {
      data = await this.leaf.pread(LEAF_DATA_START + offset, psize);
    } catch (e) {
      throw err.io(`read from ${this.leaf.path} failed`, e);
    }
    if (verify(data)) {
      // A single device being replaced (a replacing/spare vdev as the whole
      // top-level): copy the verified block onto the new member.
      if (opts.mode === 'resilver' && !this.readOnly && childNeedsResilver(this.leaf, NONE)) {
        try {
          await this.leaf.pwrite(LEAF_DATA_START + offset, data);
          opts.onRepair?.(this.leaf, LEAF_DATA_START + offset, psize);
        } catch {
          // counted by the member leaf; the resilver will report the device
        }
      }
      return data;
    }
    // No other copy here: every mode can only report.
    this.leaf.errors.cksum++;
    this.events.onChecksumError?.(this.leaf, LEAF_DATA_START + offset, psize);
    throw err.io(`checksum mismatch at vdev ${this.id} offset ${offset} on ${this.leaf.path}`);
  }

  async flush(): Promise<void> {
    if (!leafUsable(this.leaf.state)) throw err.io(`vdev ${this.id} (${this.leaf.path}) is ${this.leaf.state}`);
    try {
      await this.leaf.fsync();
    } catch (e) {
      throw err.io(`flush of ${this.leaf.path} failed`, e);
    }
  }

  state(): VdevState {
    return this.leaf.state;
  }

  leaves(): Leaf[] {
    return realLeaves(this.leaf);
  }

  /** Swap the leaf (start or end of a replacement of a single-device top-level). */
  replaceLeaf(neu: Leaf, cfg: Extract<VdevConfig, { type: 'file' | 'disk' }>): void {
    this.leaf = neu;
    this.cfg = cfg;
  }

  config(): VdevConfig {
    if (this.leaf instanceof ReplacingLeaf) return { ...this.leaf.config(), id: this.id, asize: this.capacity };
    const c = { ...this.cfg, guid: this.leaf.guid, path: this.leaf.path, id: this.id, asize: this.capacity };
    if (this.leaf.state === 'OFFLINE') c.offline = true;
    else delete c.offline;
    return c;
  }

  async close(): Promise<void> {
    await this.leaf.close();
  }
}
