/**
 * A snapshot of a volume as a read-only BlockDevice: reads and block status
 * straight from the snapshot's block tree (it never changes).
 */
import { err } from '../errors.js';
import type { BlockDevice, BlockDeviceInfo, Extent } from '../device/block-device.js';
import type { Pool } from '../pool/pool.js';
import { dnodeFromJson, type Dnode } from '../pool/object/dnode.js';
import { BlockTree } from '../pool/object/tree.js';
import { blockExtents } from '../device/extents.js';
import { findSnap } from '../pool/dataset/snapshots.js';
import type { DatasetRecord, SnapshotRecord } from '../pool/dataset/directory.js';

export class SnapshotDevice implements BlockDevice {
  private dnode: Dnode;
  private tree: BlockTree;
  private closed = false;
  /** The snapshot itself (not its name: a rename or a promote must not break an open export). */
  private snap: SnapshotRecord;
  private owner: DatasetRecord;

  constructor(
    private pool: Pool,
    private full: string,
  ) {
    const { snap, rec } = findSnap(pool, full);
    if (!snap.object) throw err.inval(`'${full}' is not a volume snapshot`);
    this.snap = snap;
    this.owner = rec;
    this.dnode = dnodeFromJson(snap.object);
    this.tree = new BlockTree(pool.io);
  }

  private alive(): void {
    if (this.closed) throw err.shutdown('snapshot device is closed');
    if (this.pool.closed) throw err.shutdown(`pool '${this.pool.name}' is not open`);
    if (this.owner.snapshots.includes(this.snap)) return;
    // Moved by a promote, or gone: its blocks may be freed from here on.
    for (const rec of this.pool.dir.datasets.values()) {
      if (rec.snapshots.includes(this.snap)) {
        this.owner = rec;
        return;
      }
    }
    throw err.noent(`snapshot '${this.full}' was destroyed`);
  }

  info(): BlockDeviceInfo {
    return {
      size: this.dnode.nblocks * this.dnode.blockSize,
      blockSize: this.dnode.blockSize,
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
    this.alive();
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const bs = this.dnode.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const ids: number[] = [];
    for (let b = first; b <= last; b++) ids.push(b);
    const bps = await Promise.all(ids.map((b) => this.tree.getBp(this.dnode, b)));
    const datas = await this.pool.io.readMany(bps);
    ids.forEach((b, i) => {
      const start = Math.max(offset, b * bs);
      const end = Math.min(offset + length, (b + 1) * bs);
      const d = datas[i];
      if (d) d.copy(out, start - offset, start - b * bs, end - b * bs);
      else out.fill(0, start - offset, end - offset);
    });
    return out;
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
    this.alive();
    const bs = this.dnode.blockSize;
    const first = Math.floor(offset / bs);
    const end = Math.min(Math.ceil((offset + length) / bs), this.dnode.nblocks, first + (1 << 20));
    const known: [number, boolean][] = [];
    await this.tree.walk(this.dnode, first, end, (b) => void known.push([b, true]));
    return blockExtents(offset, length, bs, first, end, known);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
