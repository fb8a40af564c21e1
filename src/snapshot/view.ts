/**
 * A read-only BlockDevice over a snapshot, whatever its strategy: a source
 * says what each block held (the strategy resolves which object has it);
 * this class does the BlockDevice part (splitting requests into blocks,
 * block status, refusing writes, noticing a closed pool or a destroyed
 * snapshot). cow and row build one per open (their openSnapshot); native's
 * SnapshotDevice (src/volume) is one over the snapshot's own block tree.
 */
import { err } from '../errors.js';
import type { BlockDevice, BlockDeviceInfo, Extent } from '../device/block-device.js';
import { blockExtents } from '../device/extents.js';
import type { Pool } from '../pool/pool.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';

export interface ViewSource {
  /** Contents of blocks as the snapshot saw them (null: zeroes). */
  read(ids: number[]): Promise<(Buffer | null)[]>;
  /** Blocks in [first, end) holding data in the snapshot, ascending. */
  allocated(first: number, end: number): Promise<number[]>;
}

export interface ViewOptions {
  pool: Pool;
  /** Bytes, a whole number of blocks. */
  size: number;
  bs: number;
  /** The source of the blocks, resolved per request (it may change when the snapshot's neighbours do). */
  source(): Promise<ViewSource>;
  /** Throws when the snapshot is gone (called before every request, after the closed checks). */
  check(): void;
  /** Held around every request: cow and row pass the pool's gate against structural changes. */
  gate?: { enter(): Promise<void>; leave(): void };
}

/** LayeredView's check for a snapshot that stays with its dataset (cow, row: no promote). */
export function stillThere(full: string, rec: DatasetRecord, snap: SnapshotRecord): () => void {
  return () => {
    if (!rec.snapshots.includes(snap)) throw err.noent(`snapshot '${full}' was destroyed`);
  };
}

export class LayeredView implements BlockDevice {
  private closed = false;

  constructor(private readonly v: ViewOptions) {}

  private alive(): void {
    if (this.closed) throw err.shutdown('snapshot device is closed');
    if (this.v.pool.closed) throw err.shutdown(`pool '${this.v.pool.name}' is not open`);
    this.v.check();
  }

  /** Run a request: checks first (a failure rejects, never throws), inside the gate when there is one. */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    const gate = this.v.gate;
    if (!gate) {
      this.alive();
      return fn();
    }
    await gate.enter();
    try {
      this.alive();
      return await fn();
    } finally {
      gate.leave();
    }
  }

  info(): BlockDeviceInfo {
    return {
      size: this.v.size,
      blockSize: this.v.bs,
      minBlockSize: 512,
      maxRequest: 32 * 1024 * 1024,
      readOnly: true,
      multiConn: true,
      canTrim: false,
      canZero: false,
      canFastZero: false,
      canCache: true,
    };
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.guarded(async () => {
      const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      const bs = this.v.bs;
      const first = Math.floor(offset / bs);
      const last = Math.floor((offset + length - 1) / bs);
      const ids: number[] = [];
      for (let b = first; b <= last; b++) ids.push(b);
      const datas = await (await this.v.source()).read(ids);
      ids.forEach((b, i) => {
        const start = Math.max(offset, b * bs);
        const end = Math.min(offset + length, (b + 1) * bs);
        const d = datas[i];
        if (d) d.copy(out, start - offset, start - b * bs, end - b * bs);
        else out.fill(0, start - offset, end - offset);
      });
      return out;
    });
  }

  async write(): Promise<void> {
    throw err.perm('snapshots are read-only');
  }
  async writeZeroes(): Promise<void> {
    throw err.perm('snapshots are read-only');
  }
  async trim(): Promise<void> {
    throw err.perm('snapshots are read-only');
  }
  async flush(): Promise<void> {}

  blockStatus(offset: number, length: number): Promise<Extent[]> {
    return this.guarded(async () => {
      const bs = this.v.bs;
      const first = Math.floor(offset / bs);
      const end = Math.min(Math.ceil((offset + length) / bs), Math.ceil(this.v.size / bs), first + (1 << 20));
      const known = (await (await this.v.source()).allocated(first, end)).map((b): [number, boolean] => [b, true]);
      return blockExtents(offset, length, bs, first, end, known);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
