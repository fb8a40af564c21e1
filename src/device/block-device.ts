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
   * them: a caller that can give each write of at least `blockSize` bytes a
   * fresh buffer should, and pass `owned: true`. A pool volume then keeps
   * whole blocks as views of the payload; copying them into block buffers
   * measured ~12 us per 16 KiB block on the write path, mostly allocation.
   */
  keepsPayload?: boolean;
}

export interface BlockDevice {
  info(): BlockDeviceInfo;
  /** Read `length` bytes at `offset` into a new buffer (or `into` if given, which must be >= length). */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
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
