/**
 * A read-only BlockDevice over a cow or row snapshot: the strategy resolves
 * which object holds each block; this class does the BlockDevice part.
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

export class LayeredView implements BlockDevice {
  private closed = false;

  constructor(
    private pool: Pool,
    private full: string,
    private rec: DatasetRecord,
    private snap: SnapshotRecord,
    private size: number,
    private bs: number,
    private source: () => Promise<ViewSource>,
    private gate: { enter(): Promise<void>; leave(): void },
  ) {}

  private alive(): void {
    if (this.closed) throw err.shutdown('snapshot device is closed');
    if (this.pool.closed) throw err.shutdown(`pool '${this.pool.name}' is not open`);
    if (!this.rec.snapshots.includes(this.snap)) throw err.noent(`snapshot '${this.full}' was destroyed`);
  }

  info(): BlockDeviceInfo {
    return {
      size: this.size,
      blockSize: this.bs,
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

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    await this.gate.enter();
    try {
      this.alive();
      const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      const bs = this.bs;
      const first = Math.floor(offset / bs);
      const last = Math.floor((offset + length - 1) / bs);
      const ids: number[] = [];
      for (let b = first; b <= last; b++) ids.push(b);
      const datas = await (await this.source()).read(ids);
      ids.forEach((b, i) => {
        const start = Math.max(offset, b * bs);
        const end = Math.min(offset + length, (b + 1) * bs);
        const d = datas[i];
        if (d) d.copy(out, start - offset, start - b * bs, end - b * bs);
        else out.fill(0, start - offset, end - offset);
      });
      return out;
    } finally {
      this.gate.leave();
    }
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

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    await this.gate.enter();
    try {
      this.alive();
      const bs = this.bs;
      const first = Math.floor(offset / bs);
      const end = Math.min(Math.ceil((offset + length) / bs), Math.ceil(this.size / bs), first + (1 << 20));
      const known = (await (await this.source()).allocated(first, end)).map((b): [number, boolean] => [b, true]);
      return blockExtents(offset, length, bs, first, end, known);
    } finally {
      this.gate.leave();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
