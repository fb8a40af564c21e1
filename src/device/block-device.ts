/**
 * BlockDevice: THE seam. Every front end (NBD, iSCSI, the CLI's import/export,
 * qcow2 conversion) talks to this interface and nothing else; a pool volume,
 * a snapshot, a qcow2 image, an overlay chain and a raw file implement it.
 *
 * Implementations may trust their arguments: callers go through
 * `checked()` in ./validate.ts (the one place that validates range, flags and
 * read-only), exactly as nbdkit's server/backend.c validates once for every
 * plugin and filter.
 *
 * Durability contract: when write()/writeZeroes()/trim() resolve with
 * `fua: true`, or when flush() resolves, every write that had resolved before
 * (on any handle to the same device) is durable: it survives kill -9 and
 * power loss.
 */
import { settleAll } from '../errors.js';

export interface WriteOptions {
  /** Force unit access: durable before the promise resolves. */
  fua?: boolean;
  /**
   * The caller hands `data` over: it will never read or reuse it again, so
   * the device may keep it instead of copying (a pool volume keeps whole
   * blocks as views of it). Without this flag `data` may be a pooled or
   * socket buffer that is reused as soon as the promise resolves.
   */
  owned?: boolean;
  /**
   * With `owned`: the device calls this once it holds no reference to
   * `data` any more (at the earliest once the write has applied it, maybe
   * before its promise settles), and the caller may then reuse the buffer
   * (the NBD server pools its payloads this way). A device may never call
   * it; the buffer is then the GC's. A pool volume calls it once the txg
   * its whole blocks joined has synced, or at once when it kept none.
   */
  release?: () => void;
}

export interface ZeroOptions extends WriteOptions {
  /** Allow the range to become a hole (deallocate). NBD's !NO_HOLE, SCSI UNMAP bit. */
  mayTrim?: boolean;
  /** Fail with ENOTSUP rather than fall back to writing zeroes slowly (NBD_CMD_FLAG_FAST_ZERO). */
  fastZero?: boolean;
}

/** One run of blockStatus(): `hole` means unallocated, `zero` means reads as zeroes. */
export interface Extent {
  offset: number;
  length: number;
  hole: boolean;
  zero: boolean;
}

export interface BlockDeviceInfo {
  /** Bytes. */
  size: number;
  /** Smallest I/O the device handles without read-modify-write (preferred block size). */
  blockSize: number;
  /** Minimum addressable unit (usually 512 or 1). */
  minBlockSize: number;
  /** Largest single request accepted. */
  maxRequest: number;
  readOnly: boolean;
  /** True when flush/fua on one handle covers writes through every handle (NBD CAN_MULTI_CONN). */
  multiConn: boolean;
  canTrim: boolean;
  canZero: boolean;
  canFastZero: boolean;
  canCache: boolean;
  /**
   * The device keeps owned payloads (WriteOptions.owned) instead of copying
   * them: a caller that can leave each write of at least `blockSize` bytes
   * untouched until WriteOptions.release (or for good) should, and pass
   * `owned: true`. A pool volume then keeps whole blocks as views of the
   * payload until their txg syncs (after that, in its cache only within a
   * budget and never if lent: src/pool/io/pipeline.ts); copying them into block
   * buffers measured ~12 us per 16 KiB block on the write path, mostly
   * allocation.
   */
  keepsPayload?: boolean;
}

export interface BlockDevice {
  info(): BlockDeviceInfo;
  /** Read `length` bytes at `offset` into a new buffer (or `into` if given, which must be >= length). */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * Optional: read several ranges (ascending, non-overlapping, inside the
   * device) packed back to back into `into`, as if read one by one. Batch
   * readers (convert) use it when it exists: the device can then read
   * ranges that lie next to each other in its file with one system call
   * (formats/raw/file-pieces.ts says why that matters).
   */
  readRanges?(ranges: ReadRanges, into: Buffer): Promise<void>;
  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void>;
  /** Discard: contents of the range become unspecified (we guarantee zeroes). */
  trim(offset: number, length: number, opts?: WriteOptions): Promise<void>;
  flush(): Promise<void>;
  /** Extents covering [offset, offset+length), in order, contiguous; may stop early but covers at least one byte. */
  blockStatus(offset: number, length: number): Promise<Extent[]>;
  /** Prefetch hint (NBD_CMD_CACHE); may be a no-op. */
  cache?(offset: number, length: number): Promise<void>;
  /** Release resources; the device is unusable afterwards. */
  close(): Promise<void>;
}

/** Ranges for BlockDevice.readRanges: [offset, length], ascending, non-overlapping. */
export type ReadRanges = ReadonlyArray<readonly [offset: number, length: number]>;

/** Bytes `ranges` cover, checked against `into` (a short buffer would silently read short). */
function packedLength(ranges: ReadRanges, into: Buffer): number {
  let total = 0;
  for (const [, length] of ranges) total += length;
  if (total > into.length) throw new RangeError(`readRanges: ${total} bytes do not fit a buffer of ${into.length}`);
  return total;
}

/**
 * readRanges where a device has none (or cannot use its own): the ranges
 * read one by one, concurrently. Every read settles before the call does,
 * even when one fails: the caller may reuse `into` once it sees the failure.
 */
export async function readRangesEach(dev: Pick<BlockDevice, 'read'>, ranges: ReadRanges, into: Buffer): Promise<void> {
  packedLength(ranges, into);
  let at = 0;
  const reads = ranges.map(([offset, length]) => {
    const slot = into.subarray(at, at + length);
    at += length;
    // read() may answer with a buffer of its own instead of filling `into`.
    return dev.read(offset, length, slot).then((b) => {
      if (b.buffer !== slot.buffer || b.byteOffset !== slot.byteOffset) b.copy(slot, 0, 0, length);
    });
  });
  await settleAll(reads);
}

/** `dev.readRanges` when it has one, else range by range. */
export function readRangesOf(dev: BlockDevice, ranges: ReadRanges, into: Buffer): Promise<void> {
  try {
    packedLength(ranges, into);
  } catch (e) {
    return Promise.reject(e);
  }
  return dev.readRanges ? dev.readRanges(ranges, into) : readRangesEach(dev, ranges, into);
}
