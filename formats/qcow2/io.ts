/**
 * Positional file I/O for an image file, with the two error flavours the
 * codec needs: metadata that must exist (short read = corrupt image) and
 * guest data that may lie past EOF in a sparse tail (reads as zeroes).
 *
 * Requests go straight to fs.read/fs.write on the descriptor (the
 * FileHandle promise wrappers cost more per call). On tmpfs/ramfs, requests
 * of up to INLINE_MAX bytes are done synchronously, as formats/raw does:
 * there I/O is a memcpy that never waits for a disk, and the thread-pool
 * hand-off costs more than the copy. With `syncIo` (batch tools such as
 * convert, whose event loop has nothing else to serve) every request on a
 * memory file system is synchronous, whatever its size; a server keeps the
 * cap so no request stalls the others. Disk-backed files stay asynchronous.
 */
import fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { memoryBacked } from '../raw/memory-backed.js';
import { readPieces, type FilePiece } from '../raw/file-pieces.js';
import { err, fromSystemError } from '../../src/errors.js';

/** Largest request done inline on a memory file system. */
const INLINE_MAX = 64 * 1024;

async function inlineMaxFor(path: string, syncIo: boolean): Promise<number> {
  if (!(await memoryBacked(path))) return 0;
  return syncIo ? Infinity : INLINE_MAX;
}

function pread(fd: number, buf: Buffer, off: number, len: number, pos: number, inlineMax: number): Promise<number> {
  if (len <= inlineMax) {
    try {
      return Promise.resolve(fs.readSync(fd, buf, off, len, pos));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

function pwrite(fd: number, buf: Buffer, off: number, len: number, pos: number, inlineMax: number): Promise<number> {
  if (len <= inlineMax) {
    try {
      return Promise.resolve(fs.writeSync(fd, buf, off, len, pos));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

export class ImageFile {
  private constructor(
    readonly path: string,
    private fh: FileHandle,
    private _size: number,
    readonly readOnly: boolean,
    /** cache=unsafe: never sync (qemu-img convert's default). Write order is kept; durability is not. */
    private readonly noSync = false,
    /** Requests up to this size run synchronously (0: none; see the header comment). */
    private readonly inlineMax = 0,
  ) {
    this.fd = fh.fd;
  }

  private readonly fd: number;

  static async open(path: string, readOnly: boolean, noSync = false, syncIo = false): Promise<ImageFile> {
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
    return new ImageFile(path, fh, st.size, readOnly, noSync, await inlineMaxFor(path, syncIo));
  }

  static async create(path: string): Promise<ImageFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'w+');
    } catch (e) {
      throw fromSystemError(e, `cannot create '${path}'`);
    }
    return new ImageFile(path, fh, 0, false, false, await inlineMaxFor(path, false));
  }

  get size(): number {
    return this._size;
  }

  /** Read guest data: bytes past EOF read as zeroes (a sparse or truncated tail). */
  async readZeroFill(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    try {
      while (done < length) {
        const n = await pread(this.fd, buf, done, length - done, offset + done, this.inlineMax);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw fromSystemError(e, `read from '${this.path}'`);
    }
    if (done < length) buf.fill(0, done, length);
    return buf;
  }

  /** Read guest data of several pieces (ascending file offsets), neighbours with one system call; past EOF reads as zeroes. */
  readPieces(pieces: readonly FilePiece[]): Promise<void> {
    return readPieces(this.fd, pieces, this.inlineMax).catch((e) => {
      throw fromSystemError(e, `read from '${this.path}'`);
    });
  }

  /** Read metadata that must be entirely inside the file. */
  async readExact(offset: number, length: number, what: string): Promise<Buffer> {
    if (offset + length > this._size) throw err.corrupt(`qcow2: ${what} at offset ${offset} is past the end of the file`);
    return this.readZeroFill(offset, length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.readOnly) throw err.perm(`'${this.path}' is open read-only`);
    // The size grows when the write is issued: writes may be in flight behind the image lock (write-behind).
    if (offset + data.length > this._size) this._size = offset + data.length;
    let done = 0;
    try {
      while (done < data.length) done += await pwrite(this.fd, data, done, data.length - done, offset + done, this.inlineMax);
    } catch (e) {
      throw fromSystemError(e, `write to '${this.path}'`);
    }
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
