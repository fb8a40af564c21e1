/**
 * Device tree types shared by the pool engine and the vdev implementations.
 *
 * Address spaces:
 *  - A *leaf* (file or block device) has raw byte offsets. Labels occupy
 *    [0, 512 KiB) and [size - 512 KiB, size); [512 KiB, 4 MiB) is reserved
 *    (as ZFS's boot block area); data lives in [4 MiB, size - 512 KiB).
 *  - A *top-level* vdev (single leaf, mirror, raidz) exposes its own
 *    allocatable address space [0, capacity). A DVA is (top-level id, offset,
 *    asize) in that space; the top-level maps it onto its children (mirror:
 *    same offset on every child; raidz: columns across children).
 *  - All offsets and sizes at top-level granularity are multiples of the
 *    sector size (1 << ashift, 4096).
 */

export const ASHIFT = 12;
export const SECTOR = 1 << ASHIFT;
export const LABEL_SIZE = 256 * 1024;
/** Two labels at the front plus the reserved boot area: data starts here on every leaf. */
export const LEAF_DATA_START = 4 * 1024 * 1024;
/** Two labels at the end. */
export const LEAF_TAIL_RESERVE = 2 * LABEL_SIZE;
/** Smallest device we accept. */
export const MIN_DEVICE_SIZE = 64 * 1024 * 1024;

export type VdevState = 'ONLINE' | 'DEGRADED' | 'FAULTED' | 'OFFLINE' | 'UNAVAIL' | 'REMOVED';

/**
 * Fields a *top-level* vdev records in its config (all optional so that
 * configs written before them, and interior/leaf configs, stay valid).
 *  - asize: the top-level's capacity fixed at creation. Replacing a child by a
 *    larger device must not move the end of the address space (ZFS records
 *    asize for the same reason); a child smaller than its share refuses to open.
 *  - log: a separate intent-log device (`pool create ... log DEV`); the vdev
 *    layer treats it like any top-level, the allocator keeps it for the ZIL.
 */
export interface TopLevelFields {
  id?: number;
  asize?: number;
  log?: boolean;
}

/** Persistent description of the device tree (stored in every label, JSON). */
export type VdevConfig =
  | ({
      type: 'file' | 'disk';
      guid: string;
      path: string;
      offline?: boolean;
      whole?: boolean;
      /** Attached or replaced and not yet fully resilvered: reads avoid it, resilver rewrites it (ZFS keeps this as a DTL). */
      resilvering?: boolean;
    } & TopLevelFields)
  | ({ type: 'mirror'; guid: string; children: VdevConfig[] } & TopLevelFields)
  | ({ type: 'raidz'; guid: string; nparity: 1 | 2 | 3; children: VdevConfig[] } & TopLevelFields)
  /** A device being replaced (`replacing`) or stood in for by a hot spare (`spare`): children[0] is the original. */
  | ({ type: 'spare' | 'replacing'; guid: string; children: VdevConfig[] } & TopLevelFields);

/**
 * The root of the device tree (ZFS's root vdev): the striped top-levels, plus
 * auxiliary devices that hold no pool data (hot spares, cache devices).
 */
export interface VdevRootConfig {
  type: 'root';
  guid: string;
  children: VdevConfig[];
  spares?: VdevConfig[];
  l2cache?: VdevConfig[];
}

/** Error counters per device, as `zpool status` shows them. */
export interface VdevErrors {
  read: number;
  write: number;
  cksum: number;
}

/** I/O statistics of a leaf (successful operations), for `pool iostat`. */
export interface VdevIoStats {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
}

/** Raw I/O on one leaf device (a file or block device). */
export interface Leaf {
  readonly guid: string;
  readonly path: string;
  /** Device size in bytes (as opened). */
  readonly size: number;
  state: VdevState;
  errors: VdevErrors;
  /** Completed I/O counters (optional so simple test leaves need not keep them). */
  readonly stats?: VdevIoStats;
  pread(offset: number, length: number): Promise<Buffer>;
  pwrite(offset: number, data: Buffer | Buffer[]): Promise<void>;
  fsync(): Promise<void>;
  close(): Promise<void>;
  /**
   * Try to bring a FAULTED/UNAVAIL/REMOVED leaf back (reopen the device, reset
   * the consecutive-failure count); `zpool clear`/`online`. Resolves to the new
   * state. Optional so that simple test leaves need not implement it.
   */
  reopen?(): Promise<VdevState>;
}

/**
 * Verifies a candidate physical block (returns true when its checksum matches
 * the block pointer). Top-level vdevs call it to pick a good copy or a good
 * reconstruction, and repair the rest (self-healing).
 */
export type Verify = (data: Buffer) => boolean;

/** How a top-level read treats redundancy (scrub and resilver read every copy). */
export interface ReadOptions {
  /**
   * 'normal' (default): read one copy / the data columns, fall back only on
   * failure. 'scrub': read and check every copy, every parity column too, and
   * repair whatever disagrees with the verified data (counting CKSUM errors).
   * 'resilver': as scrub, but children being resilvered are rewritten without
   * being read or blamed.
   */
  mode?: 'normal' | 'scrub' | 'resilver';
  /** Called for every repair write issued (bytes on that leaf), for scrub/resilver statistics. */
  onRepair?: (leaf: Leaf, offset: number, length: number) => void;
}

export interface TopVdev {
  readonly id: number;
  readonly guid: string;
  /** Allocatable bytes in this top-level's address space. */
  readonly capacity: number;
  /** Bytes this top-level really stores for user data per allocated byte (raidz: data/(data+parity)). */
  readonly dataRatio: number;
  /** Space to allocate for a block of `psize` physical bytes (raidz: parity and padding included). */
  asize(psize: number): number;
  /** Write a whole block. `data.length` is the psize (multiple of SECTOR). */
  write(offset: number, data: Buffer): Promise<void>;
  /**
   * Write physically adjacent blocks in one device operation (pwritev), for
   * linear layouts (single, mirror). Optional: callers fall back to write().
   */
  writev?(offset: number, data: Buffer[]): Promise<void>;
  /** Read a block of `psize` bytes, returning the first copy/reconstruction that `verify` accepts; self-heals bad copies; throws EIO if none verifies. */
  read(offset: number, psize: number, verify: Verify, opts?: ReadOptions): Promise<Buffer>;
  /** Make every completed write durable on every child. */
  flush(): Promise<void>;
  state(): VdevState;
  leaves(): Leaf[];
  /**
   * Mark a child as being resilvered (after attach/replace/online of a stale
   * device): normal reads avoid it, 'resilver' reads rewrite it without
   * blaming it. Not present on single-leaf top-levels (nothing to copy from).
   */
  setResilvering?(leaf: Leaf, on: boolean): void;
  config(): VdevConfig;
  close(): Promise<void>;
}
