/**
 * MemoryLeaf: a leaf held in memory, for unit tests of the layers above
 * (no files, no fsync cost). Same state and error policy as a file leaf.
 * Sparse: 1 MiB chunks are allocated on first write, so large test devices
 * cost only what is written.
 */
import { AbstractLeaf, type LeafPolicy } from './leaf-base.js';
import type { VdevState } from './types.js';

const CHUNK = 1 << 20;

export class MemoryLeaf extends AbstractLeaf {
  private readonly chunks = new Map<number, Buffer>();

  constructor(guid: string, path: string, size: number, policy: LeafPolicy = {}) {
    super(guid, path, size, 'ONLINE', policy);
  }

  /** Copy of the bytes at [offset, offset+length), bypassing state and counters (tests inspect devices with it). */
  peek(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let done = 0; done < length; ) {
      const at = offset + done;
      const n = Math.min(CHUNK - (at % CHUNK), length - done);
      this.chunks.get(Math.floor(at / CHUNK))?.copy(out, done, at % CHUNK, (at % CHUNK) + n);
      done += n;
    }
    return out;
  }

  /** Overwrite bytes directly, bypassing state and counters (tests damage devices with it). */
  poke(offset: number, data: Buffer): void {
    for (let done = 0; done < data.length; ) {
      const at = offset + done;
      const n = Math.min(CHUNK - (at % CHUNK), data.length - done);
      const idx = Math.floor(at / CHUNK);
      let c = this.chunks.get(idx);
      if (!c) this.chunks.set(idx, (c = Buffer.alloc(CHUNK)));
      data.copy(c, at % CHUNK, done, done + n);
      done += n;
    }
  }

  protected async doRead(offset: number, length: number): Promise<Buffer> {
    return this.peek(offset, length);
  }

  protected async doWrite(offset: number, data: Buffer[]): Promise<void> {
    let at = offset;
    for (const b of data) {
      this.poke(at, b);
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
    // Closing is not a failure: nobody is told the device went away.
    this.onStateChange = undefined;
    if (this.state !== 'OFFLINE') this.state = 'UNAVAIL';
  }
}
