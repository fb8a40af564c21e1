/**
 * FileLeaf: a leaf vdev backed by a regular file or a block device.
 *
 * Positional I/O through one fs.promises FileHandle (pread/pwritev never move
 * a shared file position, so concurrent I/O on one handle is safe). Durability
 * is fdatasync: POSIX requires it to flush the metadata needed to read the
 * data back (block allocation of a sparse file included), and the size of a
 * pool device never changes while it is open.
 *
 * On tmpfs/ramfs (memoryBacked) reads up to INLINE_MAX and writes up to
 * INLINE_WRITE_MAX run synchronously on the event loop: a pread there is a memcpy, and the
 * thread-pool hand-off cost more than the copy (cold-cache 4 KiB random
 * reads of a pool volume over NBD went from ~10-13K to ~16K IOPS, with 40%
 * less CPU per GB; bench/README.md).
 *
 * A device that cannot be opened is still represented, by a leaf in state
 * UNAVAIL (size 0 or the size it had), so the tree can report it by path and
 * decide whether the pool has enough replicas.
 */
import { constants as C, promises as fsp, readSync, writevSync, type Stats } from 'node:fs';
import { basename } from 'node:path';
import { err, fromSystemError } from '../../errors.js';
import { memoryBacked } from '../../device/memory-backed.js';
import { AbstractLeaf, type LeafPolicy } from './leaf-base.js';
import { MIN_DEVICE_SIZE, type VdevState } from './types.js';

export interface FileLeafOptions extends LeafPolicy {
  /** Open read-only (inspecting labels of a pool that is not imported). */
  readOnly?: boolean;
  /**
   * Synchronous I/O of up to INLINE_MAX bytes: 'auto' (default) only for
   * files on tmpfs/ramfs; STRATA_INLINE_IO=always|never overrides 'auto'.
   */
  inlineIo?: 'auto' | 'always' | 'never';
}

/** Largest request done synchronously when inline I/O is on (the event loop is blocked ~0.3 ms per MiB). */
export const INLINE_MAX = 4 * 1024 * 1024;
/**
 * Largest write done synchronously when inline I/O is on. Smaller than
 * INLINE_MAX: a txg sync issues its blocks as runs of up to 4 MiB, and
 * copying those on the event loop kept it from the requests meanwhile,
 * while the second core had room. Measured on the 2-core bench machine
 * (NBD to a pool volume on tmpfs, 4 alternated passes, bench/README.md):
 * 1 MiB writes ~+4%, 4K random writes ~+5%, event loop 10% less busy in
 * the former. Small writes (labels, uberblocks, a lone block) stay inline,
 * where the hand-off would cost more than the copy.
 */
export const INLINE_WRITE_MAX = 128 * 1024;

export class FileLeaf extends AbstractLeaf {
  private fh: fsp.FileHandle | undefined;
  /** True when the path is a block device (opened O_EXCL so a mounted disk is refused). */
  isBlockDevice = false;
  /** Requests up to INLINE_MAX are done synchronously (FileLeafOptions.inlineIo). */
  inline = false;

  private constructor(
    guid: string,
    path: string,
    private readonly opts: FileLeafOptions,
  ) {
    super(guid, path, 0, 'UNAVAIL', opts);
  }

  /** Open `path`; throws StorageError (ENOENT, EBUSY, EPERM, EIO...) if it cannot be opened. */
  static async open(path: string, guid: string, opts: FileLeafOptions = {}): Promise<FileLeaf> {
    const leaf = new FileLeaf(guid, path, opts);
    await leaf.openHandle();
    return leaf;
  }

  /** Open `path`, or return an UNAVAIL leaf (with `openError` set) if it cannot be opened. */
  static async openOrUnavail(path: string, guid: string, opts: FileLeafOptions = {}): Promise<FileLeaf> {
    const leaf = new FileLeaf(guid, path, opts);
    try {
      await leaf.openHandle();
    } catch (e) {
      leaf.openError = e as Error;
    }
    return leaf;
  }

  /** Why the last open failed (for `pool import` messages). */
  openError: Error | undefined;

  private async openHandle(): Promise<void> {
    let st: Stats;
    try {
      st = await fsp.stat(this.path);
    } catch (e) {
      throw fromSystemError(e, `cannot open '${this.path}'`);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw err.inval(`'${this.path}' is not a file or block device`);
    const ro = this.opts.readOnly === true;
    let flags = ro ? C.O_RDONLY : C.O_RDWR;
    // O_EXCL on a block device (Linux) is an exclusive claim: fails with EBUSY
    // while the disk is mounted or held by another pool/md/dm user.
    if (st.isBlockDevice() && !ro) flags |= C.O_EXCL;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.path, flags);
    } catch (e) {
      throw fromSystemError(e, `cannot open '${this.path}'`);
    }
    try {
      this.isBlockDevice = st.isBlockDevice();
      this.size = this.isBlockDevice ? await blockDeviceSize(this.path, fh) : (await fh.stat()).size;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw fromSystemError(e, `cannot size '${this.path}'`);
    }
    const mode = this.opts.inlineIo ?? 'auto';
    const env = process.env['STRATA_INLINE_IO'];
    this.inline = mode === 'auto' ? (env === 'always' ? true : env === 'never' ? false : !this.isBlockDevice && (await memoryBacked(this.path))) : mode === 'always';
    this.fh = fh;
    this.openError = undefined;
    this.resetFailures();
    this.state = 'ONLINE';
  }

  protected async doRead(offset: number, length: number): Promise<Buffer> {
    const fh = this.handle();
    // Kept by the ARC: Buffer.alloc is much faster than allocUnsafe for retained buffers (see volume.ts).
    const buf = Buffer.alloc(length);
    const sync = this.inline && length <= INLINE_MAX;
    let done = 0;
    while (done < length) {
      const bytesRead = sync ? readSync(fh.fd, buf, done, length - done, offset + done) : (await fh.read(buf, done, length - done, offset + done)).bytesRead;
      // A short read inside the size we opened means the file was truncated
      // under us: that is an I/O error, never zeroes.
      if (bytesRead === 0) throw err.io(`${this.path}: short read at ${offset + done} (device truncated?)`);
      done += bytesRead;
    }
    return buf;
  }

  protected override readOnly(): boolean {
    return this.opts.readOnly === true;
  }

  protected async doWrite(offset: number, data: Buffer[]): Promise<void> {
    const fh = this.handle();
    let bufs = data;
    let pos = offset;
    let left = 0;
    for (const b of bufs) left += b.length;
    const sync = this.inline && left <= INLINE_WRITE_MAX;
    while (left > 0) {
      const bytesWritten = sync
        ? writevSync(fh.fd, bufs, pos)
        : (bufs.length === 1 ? await fh.write(bufs[0]!, 0, bufs[0]!.length, pos) : await fh.writev(bufs, pos)).bytesWritten;
      if (bytesWritten <= 0) throw err.io(`${this.path}: write made no progress at ${pos}`);
      left -= bytesWritten;
      pos += bytesWritten;
      if (left > 0) bufs = dropFront(bufs, bytesWritten);
    }
  }

  protected async doSync(): Promise<void> {
    await this.handle().datasync();
  }

  private handle(): fsp.FileHandle {
    // A handle closed by close() or lost with a REMOVED device reads as a
    // missing device (ENXIO), which the policy turns into REMOVED.
    if (this.fh === undefined) throw Object.assign(new Error(`${this.path}: device not open`), { code: 'ENXIO' });
    return this.fh;
  }

  async reopen(): Promise<VdevState> {
    if (this.state === 'OFFLINE') return this.state;
    const old = this.fh;
    this.fh = undefined;
    await old?.close().catch(() => undefined);
    try {
      await this.openHandle();
    } catch (e) {
      this.openError = e as Error;
      this.state = 'UNAVAIL';
    }
    return this.state;
  }

  async close(): Promise<void> {
    // Closing is not a failure: nobody is told the device went away.
    this.onStateChange = undefined;
    const fh = this.fh;
    this.fh = undefined;
    if (this.state !== 'OFFLINE') this.state = 'UNAVAIL';
    await fh?.close();
  }
}

/** Drop the first `n` bytes from a list of buffers (after a partial writev). */
function dropFront(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

/**
 * Size of a block device without ioctl: the kernel publishes it in
 * /sys/class/block/<name>/size in 512-byte units whatever the logical sector
 * size. Device-mapper and friends are symlinks (/dev/mapper/x -> ../dm-0), so
 * resolve the real node first. Where sysfs is unavailable, find the end by
 * bisection with 1-byte reads (a read at or past the end returns 0 bytes).
 */
async function blockDeviceSize(path: string, fh: fsp.FileHandle): Promise<number> {
  try {
    const name = basename(await fsp.realpath(path));
    const sectors = Number((await fsp.readFile(`/sys/class/block/${name}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors) && sectors > 0) return sectors * 512;
  } catch {
    // fall through to probing
  }
  return sizeByBisection(fh);
}

/** Size of whatever `fh` reads, found by bisection on 1-byte reads (exported for tests). */
export async function sizeByBisection(fh: fsp.FileHandle): Promise<number> {
  const one = Buffer.alloc(1);
  const readable = async (pos: number): Promise<boolean> => (await fh.read(one, 0, 1, pos)).bytesRead === 1;
  if (!(await readable(0))) return 0;
  let lo = 0; // known readable
  let hi = 1;
  while (await readable(hi)) {
    lo = hi;
    hi *= 2;
    if (hi > Number.MAX_SAFE_INTEGER / 2) break;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await readable(mid)) lo = mid;
    else hi = mid;
  }
  return lo + 1;
}

/**
 * Create a sparse file of `size` bytes for use as a pool device (`pool create
 * -s SIZE`). Refuses to replace an existing file unless `overwrite`; refuses
 * sizes below MIN_DEVICE_SIZE. The file's directory entry is made durable.
 */
export async function createSparseFile(path: string, size: number, opts: { overwrite?: boolean } = {}): Promise<void> {
  if (!Number.isSafeInteger(size) || size < MIN_DEVICE_SIZE) {
    throw err.inval(`device '${path}' is too small: ${size} bytes (minimum ${MIN_DEVICE_SIZE / (1024 * 1024)} MiB)`);
  }
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, opts.overwrite ? 'w' : 'wx', 0o600);
  } catch (e) {
    throw fromSystemError(e, `cannot create '${path}'`);
  }
  try {
    await fh.truncate(size);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw fromSystemError(e, `cannot size '${path}'`);
  }
  await fh.close();
  await syncDir(path);
}

async function syncDir(path: string): Promise<void> {
  const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) || '/' : '.';
  let d: fsp.FileHandle | undefined;
  try {
    d = await fsp.open(dir, 'r');
    await d.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the file itself is synced.
  } finally {
    await d?.close().catch(() => undefined);
  }
}
