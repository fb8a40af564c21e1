/**
 * MemoryLeaf: a leaf held in memory, for unit tests of the layers above
 * (no files, no fsync cost). Same state and error policy as a file leaf.
 */
import { AbstractLeaf, type LeafPolicy } from './leaf-base.js';
import type { VdevState } from './types.js';

export class MemoryLeaf extends AbstractLeaf {
  private buf: Buffer;

  constructor(guid: string, path: string, size: number, policy: LeafPolicy = {}) {
    super(guid, path, size, 'ONLINE', policy);
    this.buf = Buffer.alloc(size);
  }

  /** The backing bytes (tests corrupt them directly). */
  get bytes(): Buffer {
    return this.buf;
  }

  protected async doRead(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.buf.subarray(offset, offset + length));
  }

  protected async doWrite(offset: number, data: Buffer[]): Promise<void> {
    let at = offset;
    for (const b of data) {
      b.copy(this.buf, at);
      at += b.length;
    }
  }

  protected async doSync(): Promise<void> {}

  async reopen(): Promise<VdevState> {
    if (this.state !== 'OFFLINE') this.state = 'ONLINE';
    this.resetFailures();
    return this.state;
  }

  async close(): Promise<void> {
    if (this.state !== 'OFFLINE') this.state = 'UNAVAIL';
  }
}
