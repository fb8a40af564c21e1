/**
 * AbstractLeaf: the error-accounting and state policy every leaf shares, so
 * that a file, a block device and the fault-injecting test leaf behave alike.
 *
 * Subclasses implement raw I/O (doRead/doWrite/doSync) and throw on failure;
 * this class
 *  - refuses I/O to a leaf that is not ONLINE/DEGRADED (the top-levels skip
 *    such children; refusing here keeps a stray caller from touching a device
 *    the pool has given up on) — refused I/O is not counted as an error;
 *  - counts READ and WRITE errors on the leaf itself (CKSUM errors are counted
 *    by the top-level, the only layer that can tell a copy is wrong);
 *  - moves the leaf to REMOVED when the device is gone (ENXIO/ENODEV, or the
 *    file vanished), and to FAULTED when `faultAfter` I/Os fail in a row or a
 *    probe of the label area fails right after an error — the rules ZFS
 *    applies through vdev_probe and the zed's io_n threshold.
 */
import { err, StorageError } from '../../errors.js';
import type { Leaf, VdevErrors, VdevIoStats, VdevState } from './types.js';

export interface LeafPolicy {
  /** Consecutive failed I/Os after which the leaf is FAULTED (default 10, like zed's io_n). */
  faultAfter?: number;
  /** Probe the label area after an I/O error and fault the leaf if the probe fails too (default true). */
  probe?: boolean;
}

/** States in which a leaf accepts I/O. */
export function leafUsable(state: VdevState): boolean {
  return state === 'ONLINE' || state === 'DEGRADED';
}

/** Node error codes that mean the device itself is gone, not one bad sector. */
const GONE = new Set(['ENXIO', 'ENODEV', 'EBADF', 'ENOENT', 'ESTALE']);

export abstract class AbstractLeaf implements Leaf {
  private current: VdevState;
  /** Called on every state change (the tree forwards it to VdevEvents.onStateChange: spares, config updates). */
  onStateChange: ((leaf: Leaf, from: VdevState, to: VdevState) => void) | undefined;
  errors: VdevErrors = { read: 0, write: 0, cksum: 0 };
  readonly stats: VdevIoStats = { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0 };
  private consecutive = 0;
  private readonly faultAfter: number;
  private readonly probeOnError: boolean;

  constructor(
    readonly guid: string,
    readonly path: string,
    public size: number,
    state: VdevState,
    policy: LeafPolicy = {},
  ) {
    this.current = state;
    this.faultAfter = policy.faultAfter ?? 10;
    this.probeOnError = policy.probe ?? true;
  }

  protected abstract doRead(offset: number, length: number): Promise<Buffer>;
  protected abstract doWrite(offset: number, data: Buffer[]): Promise<void>;
  protected abstract doSync(): Promise<void>;
  abstract close(): Promise<void>;

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw err.inval(`${this.path}: I/O [${offset}, +${length}) outside device of ${this.size} bytes`);
    }
  }

  private refuse(): StorageError {
    return err.nxio(`${this.path}: device is ${this.state}`);
  }

  async pread(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length);
    if (!leafUsable(this.state)) throw this.refuse();
    try {
      const b = await this.doRead(offset, length);
      this.consecutive = 0;
      this.stats.readOps++;
      this.stats.readBytes += length;
      return b;
    } catch (e) {
      this.errors.read++;
      await this.failed(e);
      throw wrapIo(e, `${this.path}: read at ${offset}`);
    }
  }

  async pwrite(offset: number, data: Buffer | Buffer[]): Promise<void> {
    const bufs = Array.isArray(data) ? data : [data];
    let length = 0;
    for (const b of bufs) length += b.length;
    this.checkRange(offset, length);
    if (!leafUsable(this.state)) throw this.refuse();
    // A device opened read-only is not failing: refuse without counting.
    if (this.readOnly()) throw err.perm(`${this.path}: opened read-only`);
    try {
      await this.doWrite(offset, bufs);
      this.consecutive = 0;
      this.stats.writeOps++;
      this.stats.writeBytes += length;
    } catch (e) {
      this.errors.write++;
      await this.failed(e);
      throw wrapIo(e, `${this.path}: write at ${offset}`);
    }
  }

  async fsync(): Promise<void> {
    if (!leafUsable(this.state)) throw this.refuse();
    try {
      await this.doSync();
    } catch (e) {
      // A failed cache flush means earlier writes may be lost: a write error.
      this.errors.write++;
      await this.failed(e);
      throw wrapIo(e, `${this.path}: fsync`);
    }
  }

  /** Apply the state policy after an I/O error. */
  private async failed(e: unknown): Promise<void> {
    this.consecutive++;
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code !== undefined && GONE.has(code)) {
      this.setState('REMOVED');
      return;
    }
    if (this.consecutive >= this.faultAfter) {
      this.setState('FAULTED');
      return;
    }
    if (this.probeOnError && leafUsable(this.state)) {
      // One bad sector is a media error; a device that cannot even read its
      // first label sector is broken as a whole (ZFS's vdev_probe).
      try {
        await this.doRead(0, Math.min(4096, this.size));
      } catch {
        this.setState('FAULTED');
      }
    }
  }

  /** True when the device was opened read-only (writes are refused, not counted). */
  protected readOnly(): boolean {
    return false;
  }

  get state(): VdevState {
    return this.current;
  }

  set state(s: VdevState) {
    const from = this.current;
    if (from === s) return;
    this.current = s;
    this.onStateChange?.(this, from, s);
  }

  protected setState(s: VdevState): void {
    this.state = s;
  }

  /** Reset the consecutive-failure count (after reopen/clear). */
  protected resetFailures(): void {
    this.consecutive = 0;
  }
}

function wrapIo(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  return err.io(`${what}: ${(e as Error | undefined)?.message ?? String(e)}`, e);
}
