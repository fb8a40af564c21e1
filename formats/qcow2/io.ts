/**
 * Positional file I/O for an image file, with the two error flavours the
 * codec needs: metadata that must exist (short read = corrupt image) and
 * guest data that may lie past EOF in a sparse tail (reads as zeroes).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { err, fromSystemError } from '../../src/errors.js';

export class ImageFile {
  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private _size: number,
    readonly readOnly: boolean,
    /** cache=unsafe: never sync (qemu-img convert's default). Write order is kept; durability is not. */
    private readonly noSync = false,
  ) {}

  static async open(path: string, readOnly: boolean, noSync = false): Promise<ImageFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, readOnly ? 'r' : 'r+');
    } catch (e) {
      throw fromSystemError(e, `cannot open '${path}'`);
    }
    const st = await fh.stat();
    if (!st.isFile() && !st.isBlockDevice()) {
      await fh.close();
      throw err.inval(`'${path}' is not a file`);
    }
    return new ImageFile(path, fh, st.size, readOnly, noSync);
  }

  static async create(path: string): Promise<ImageFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'w+');
    } catch (e) {
      throw fromSystemError(e, `cannot create '${path}'`);
    }
    return new ImageFile(path, fh, 0, false);
  }

  get size(): number {
    return this._size;
  }

  /** Read guest data: bytes past EOF read as zeroes (a sparse or truncated tail). */
  async readZeroFill(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    if (done < length) buf.fill(0, done, length);
    return buf;
  }

  /** Read metadata that must be entirely inside the file. */
  async readExact(offset: number, length: number, what: string): Promise<Buffer> {
    if (offset + length > this._size) throw err.corrupt(`qcow2: ${what} at offset ${offset} is past the end of the file`);
    return this.readZeroFill(offset, length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.readOnly) throw err.perm(`'${this.path}' is open read-only`);
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw fromSystemError(e, `write to '${this.path}'`);
    }
    if (offset + data.length > this._size) this._size = offset + data.length;
  }

  async truncate(size: number): Promise<void> {
    await this.fh.truncate(size);
    this._size = size;
  }

  async sync(): Promise<void> {
    if (!this.readOnly && !this.noSync) await this.fh.datasync();
  }

  /** Bytes actually allocated on the host file system (qemu-img's "disk size"). */
  async allocatedBytes(): Promise<number> {
    const st = await this.fh.stat();
    return st.blocks * 512;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
