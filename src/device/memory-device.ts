/**
 * MemoryDevice: a sparse in-memory BlockDevice (64 KiB chunks allocated on
 * first write). For tests, examples and the NBD library's standalone use.
 */
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions, ZeroOptions } from './block-device.js';

const CHUNK = 64 * 1024;

export class MemoryDevice implements BlockDevice {
  private chunks = new Map<number, Buffer>();
  constructor(
    private size: number,
    private opts: { readOnly?: boolean; blockSize?: number } = {},
  ) {}

  info(): BlockDeviceInfo {
    return {
      size: this.size,
      blockSize: this.opts.blockSize ?? 4096,
      minBlockSize: 1,
      maxRequest: 32 * 1024 * 1024,
      readOnly: !!this.opts.readOnly,
      multiConn: true,
      canTrim: true,
      canZero: true,
      canFastZero: true,
      canCache: true,
    };
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK);
      const off = pos - idx * CHUNK;
      const n = Math.min(CHUNK - off, length - done);
      const c = this.chunks.get(idx);
      if (c) c.copy(out, done, off, off + n);
      else out.fill(0, done, done + n);
      done += n;
    }
    return out;
  }

  async write(offset: number, data: Buffer, _opts?: WriteOptions): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK);
      const off = pos - idx * CHUNK;
      const n = Math.min(CHUNK - off, data.length - done);
      let c = this.chunks.get(idx);
      if (!c) {
        c = Buffer.alloc(CHUNK);
        this.chunks.set(idx, c);
      }
      data.copy(c, off, done, done + n);
      done += n;
    }
  }

  async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK);
      const off = pos - idx * CHUNK;
      const n = Math.min(CHUNK - off, length - done);
      const c = this.chunks.get(idx);
      if (c) {
        if (n === CHUNK && opts?.mayTrim) this.chunks.delete(idx);
        else c.fill(0, off, off + n);
      }
      done += n;
    }
  }

  async trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length, { mayTrim: true });
  }

  async flush(): Promise<void> {}

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const out: Extent[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const idx = Math.floor(pos / CHUNK);
      const n = Math.min((idx + 1) * CHUNK, end) - pos;
      const hole = !this.chunks.has(idx);
      const last = out[out.length - 1];
      if (last && last.hole === hole) last.length += n;
      else out.push({ offset: pos, length: n, hole, zero: hole });
      pos += n;
    }
    return out;
  }

  async close(): Promise<void> {
    this.chunks.clear();
  }
}
