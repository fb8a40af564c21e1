/**
 * RawDevice: a raw image file as a BlockDevice.
 *
 * - Reads and writes are positional (pread/pwrite through libuv) on one
 *   file descriptor owned by a FileHandle; short transfers are retried,
 *   and reads past the physical end of a shorter file return zeroes.
 * - flush() is fdatasync(); FUA writes are followed by one. Concurrent
 *   syncs are coalesced: a caller waits for a sync that *started* after
 *   its request, so durability is never weakened (see SyncCoalescer).
 * - Deallocation: Node has no fallocate(2). Ranges of at least
 *   FALLOCATE_MIN bytes are punched (trim, write zeroes that may trim) or
 *   zero-ranged (write zeroes with NO_HOLE) by running util-linux
 *   `fallocate(1)` on the file; smaller ranges, or filesystems/hosts where
 *   that fails, get explicit zero writes. FAST_ZERO requests that would
 *   need the slow path fail with ENOTSUP, as NBD requires.
 * - blockStatus() comes from ZeroMap (see zero-map.ts): facts established
 *   by this process, data everywhere else.
 * Imports nothing from src/ but the BlockDevice interface and errors
 * (DESIGN.md: formats/ stand alone).
 */
import fs from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { memoryBacked } from './memory-backed.js';
import type { BlockDevice, BlockDeviceInfo, Extent, ReadRanges, WriteOptions, ZeroOptions } from '../../src/device/block-device.js';
import { err, fromSystemError } from '../../src/errors.js';
import { ZeroMap } from './zero-map.js';
import { readPieces, type FilePiece } from './file-pieces.js';

/** Below this, writing zeroes costs less than spawning fallocate(1). */
export const FALLOCATE_MIN = 256 * 1024;
/** Largest request done inline (synchronously) when inline I/O is on. */
export const INLINE_MAX = 64 * 1024;
/**
 * Largest write done inline (when inline I/O is on). Larger than
 * INLINE_MAX because writes to one file serialize on its inode lock in the
 * kernel anyway (tmpfs, ext4 and xfs buffered writes alike), so the thread
 * pool buys no parallelism for them, only hand-offs, a payload copied on a
 * core other than the one that just received it, and threads competing
 * with the event loop for the CPU. Measured on the 2-core bench machine,
 * 1 MiB writes to tmpfs: ~1.25x the throughput of the thread pool. The
 * event loop is blocked for the copy (~0.3 ms per MiB there), hence a cap.
 * Reads take no such lock and do run in parallel in the pool.
 */
export const INLINE_WRITE_MAX = 4 * 1024 * 1024;
const MAX_REQUEST = 64 * 1024 * 1024;
const ZERO_CHUNK = 1024 * 1024;

export interface RawOpenOptions {
  readOnly?: boolean;
  /** Run fallocate(1) for large trims/zeroes (default true). */
  useFallocate?: boolean;
  /**
   * Do reads of up to INLINE_MAX bytes and writes of up to
   * INLINE_WRITE_MAX bytes synchronously on the calling thread instead of
   * through libuv's thread pool. 'auto' (the
   * default) enables it only for files on tmpfs/ramfs, where I/O is a
   * memcpy that can never wait for a disk: there the thread-pool hand-off
   * costs more than the copy (measured: about 2x the CPU per 4 KiB op).
   * On disk-backed filesystems a page-cache miss would stall the event
   * loop, so 'auto' keeps them asynchronous.
   */
  inlineIo?: 'auto' | 'always' | 'never';
}

async function inlineFor(path: string, mode: RawOpenOptions['inlineIo']): Promise<boolean> {
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  return memoryBacked(path);
}

function pread(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}
function pwrite(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}
const RESOLVED: Promise<void> = Promise.resolve();
function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
}

/** Shares fdatasync calls between concurrent callers without weakening any of them. */
class SyncCoalescer {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  constructor(private readonly fd: number) {}

  sync(): Promise<void> {
    // A sync already running may have started before the caller's write
    // finished, so it cannot count; join (or create) the next one.
    if (!this.running) return this.start();
    if (!this.queued) {
      this.queued = this.running.then(
        () => this.start(),
        () => this.start(),
      );
    }
    return this.queued;
  }

  private start(): Promise<void> {
    this.queued = null;
    const p = fdatasync(this.fd).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}

export class RawDevice implements BlockDevice {
  private readonly fd: number;
  private readonly syncer: SyncCoalescer;
  private fallocateOk: boolean;
  private closed = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private readonly size: number,
    private readonly readOnly: boolean,
    private readonly zeroes: ZeroMap,
    useFallocate: boolean,
    /** Small requests run synchronously (RawOpenOptions.inlineIo). */
    readonly inline: boolean,
  ) {
    this.fd = fh.fd;
    this.syncer = new SyncCoalescer(this.fd);
    this.fallocateOk = useFallocate && process.platform === 'linux';
  }

  /** Open an existing raw image (regular file). */
  static async open(path: string, opts: RawOpenOptions = {}): Promise<RawDevice> {
    let fh: FileHandle;
    try {
      fh = await openFile(path, opts.readOnly ? 'r' : 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EISDIR') throw err.notsup(`${path} is not a regular file`);
      throw fromSystemError(e, `open ${path}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw err.notsup(`${path} is not a regular file`);
      const inline = await inlineFor(path, opts.inlineIo);
      return new RawDevice(fh, path, st.size, !!opts.readOnly, new ZeroMap(st.size, st.blocks === 0), opts.useFallocate ?? true, inline);
    } catch (e) {
      await fh.close().catch(() => {});
      throw fromSystemError(e, `open ${path}`);
    }
  }

  /** Create a sparse raw image of `size` bytes (fails if it exists unless overwrite). */
  static async create(path: string, size: number, opts: RawOpenOptions & { overwrite?: boolean } = {}): Promise<RawDevice> {
    if (!Number.isSafeInteger(size) || size < 0) throw err.inval(`invalid image size ${size}`);
    let fh: FileHandle;
    try {
      fh = await openFile(path, opts.overwrite ? 'w+' : 'wx+');
    } catch (e) {
      throw fromSystemError(e, `create ${path}`);
    }
    try {
      await fh.truncate(size);
    } catch (e) {
      await fh.close().catch(() => {});
      throw fromSystemError(e, `create ${path}`);
    }
    return new RawDevice(fh, path, size, false, new ZeroMap(size, true), opts.useFallocate ?? true, await inlineFor(path, opts.inlineIo));
  }

  info(): BlockDeviceInfo {
    const rw = !this.readOnly;
    return {
      size: this.size,
      blockSize: 4096,
      minBlockSize: 1,
      maxRequest: MAX_REQUEST,
      readOnly: this.readOnly,
      // One fd; fdatasync covers every write through it and the page cache is shared.
      multiConn: true,
      canTrim: rw,
      canZero: rw,
      canFastZero: rw && this.fallocateOk,
      canCache: true,
    };
  }

  private live(): void {
    if (this.closed) throw err.shutdown('raw image is closed');
  }

  /**
   * Inline requests (RawOpenOptions.inlineIo) are done before read() and
   * write() return: no async function, no await, just an already settled
   * promise, so the caller's continuation is the only microtask hop.
   */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(err.shutdown('raw image is closed'));
    const out = into ? (into.length === length ? into : into.subarray(0, length)) : Buffer.allocUnsafe(length);
    if (this.inline && length <= INLINE_MAX) {
      try {
        let done = 0;
        while (done < length) {
          const n = fs.readSync(this.fd, out, done, length - done, offset + done);
          if (n === 0) {
            out.fill(0, done); // file shorter than its recorded size
            break;
          }
          done += n;
        }
      } catch (e) {
        return Promise.reject(fromSystemError(e, `read ${this.path}`));
      }
      return Promise.resolve(out);
    }
    return this.readAsync(offset, length, out);
  }

  /** BlockDevice.readRanges: neighbouring ranges share a system call (file-pieces.ts). */
  readRanges(ranges: ReadRanges, into: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(err.shutdown('raw image is closed'));
    const pieces: FilePiece[] = [];
    let at = 0;
    for (const [offset, length] of ranges) {
      if (length > 0) pieces.push({ pos: offset, buf: into.subarray(at, at + length) });
      at += length;
    }
    return readPieces(this.fd, pieces, this.inline ? INLINE_MAX : 0).catch((e) => {
      throw fromSystemError(e, `read ${this.path}`);
    });
  }

  private async readAsync(offset: number, length: number, out: Buffer): Promise<Buffer> {
    let done = 0;
    try {
      while (done < length) {
        const n = await pread(this.fd, out, done, length - done, offset + done);
        if (n === 0) {
          out.fill(0, done); // file shorter than its recorded size
          break;
        }
        done += n;
      }
    } catch (e) {
      throw fromSystemError(e, `read ${this.path}`);
    }
    return out;
  }

  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    if (this.closed) return Promise.reject(err.shutdown('raw image is closed'));
    this.zeroes.markData(offset, data.length);
    const length = data.length;
    if (this.inline && length <= INLINE_WRITE_MAX) {
      try {
        let done = 0;
        while (done < length) done += fs.writeSync(this.fd, data, done, length - done, offset + done);
      } catch (e) {
        return Promise.reject(fromSystemError(e, `write ${this.path}`));
      }
      return opts?.fua ? this.syncAfterWrite() : RESOLVED;
    }
    return this.writeAsync(offset, data, opts);
  }

  private async writeAsync(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    try {
      let done = 0;
      while (done < data.length) done += await pwrite(this.fd, data, done, data.length - done, offset + done);
      if (opts?.fua) await this.syncer.sync();
    } catch (e) {
      throw fromSystemError(e, `write ${this.path}`);
    }
  }

  private async syncAfterWrite(): Promise<void> {
    try {
      await this.syncer.sync();
    } catch (e) {
      throw fromSystemError(e, `write ${this.path}`);
    }
  }

  async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    this.live();
    const punch = !!opts?.mayTrim;
    const fast = length >= FALLOCATE_MIN && this.fallocateOk;
    if (opts?.fastZero && !fast) throw err.notsup('zeroing this range would not be faster than writing it');
    let done = false;
    if (fast) done = await this.fallocate(punch ? '--punch-hole' : '--zero-range', offset, length);
    if (!done) {
      if (opts?.fastZero) throw err.notsup('fallocate(1) is not available for this file');
      await this.writeZeroBytes(offset, length);
    }
    this.zeroes.markZero(offset, length, done && punch);
    if (opts?.fua) await this.flush();
  }

  async trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    // The BlockDevice contract guarantees zeroes after trim, so trim is write-zeroes that may punch.
    return this.writeZeroes(offset, length, { mayTrim: true, fua: opts?.fua });
  }

  private async writeZeroBytes(offset: number, length: number): Promise<void> {
    this.zeroes.markData(offset, length);
    const z = Buffer.alloc(Math.min(ZERO_CHUNK, length));
    try {
      for (let pos = 0; pos < length; ) {
        const n = Math.min(z.length, length - pos);
        pos += n <= INLINE_MAX && this.inline ? fs.writeSync(this.fd, z, 0, n, offset + pos) : await pwrite(this.fd, z, 0, n, offset + pos);
      }
    } catch (e) {
      throw fromSystemError(e, `write zeroes ${this.path}`);
    }
  }

  /** True when fallocate(1) did the job; false (and disabled for later calls if missing) otherwise. */
  private async fallocate(mode: '--punch-hole' | '--zero-range', offset: number, length: number): Promise<boolean> {
    // Loaded here, not at start-up: child_process (with net and dgram) costs milliseconds to load.
    const { execFile } = await import('node:child_process');
    return new Promise((resolve) => {
      execFile('fallocate', [mode, '--keep-size', '--offset', String(offset), '--length', String(length), this.path], (e) => {
        if (e && (e as NodeJS.ErrnoException).code === 'ENOENT') this.fallocateOk = false;
        resolve(!e);
      });
    });
  }

  async flush(): Promise<void> {
    this.live();
    try {
      await this.syncer.sync();
    } catch (e) {
      throw fromSystemError(e, `fdatasync ${this.path}`);
    }
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.live();
    return this.zeroes.extents(offset, length);
  }

  /** NBD_CMD_CACHE: read the range so it is in the page cache (no posix_fadvise in Node). */
  async cache(offset: number, length: number): Promise<void> {
    this.live();
    const buf = Buffer.allocUnsafe(Math.min(ZERO_CHUNK, length));
    for (let pos = 0; pos < length; pos += buf.length) {
      await this.read(offset + pos, Math.min(buf.length, length - pos), buf);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}
