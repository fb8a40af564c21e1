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

/** Persistent description of the device tree (stored in every label, JSON). */
export type VdevConfig =
  | { type: 'file' | 'disk'; guid: string; path: string; id?: number; offline?: boolean; whole?: boolean }
  | { type: 'mirror'; guid: string; id?: number; children: VdevConfig[] }
  | { type: 'raidz'; guid: string; id?: number; nparity: 1 | 2 | 3; children: VdevConfig[] }
  | { type: 'spare' | 'replacing'; guid: string; children: VdevConfig[] };

/** Error counters per device, as `zpool status` shows them. */
export interface VdevErrors {
  read: number;
  write: number;
  cksum: number;
}

/** Raw I/O on one leaf device (a file or block device). */
export interface Leaf {
  readonly guid: string;
  readonly path: string;
  /** Device size in bytes (as opened). */
  readonly size: number;
  state: VdevState;
  errors: VdevErrors;
  pread(offset: number, length: number): Promise<Buffer>;
  pwrite(offset: number, data: Buffer | Buffer[]): Promise<void>;
  fsync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Verifies a candidate physical block (returns true when its checksum matches
 * the block pointer). Top-level vdevs call it to pick a good copy or a good
 * reconstruction, and repair the rest (self-healing).
 */
export type Verify = (data: Buffer) => boolean;

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
  /** Read a block of `psize` bytes, returning the first copy/reconstruction that `verify` accepts; self-heals bad copies; throws EIO if none verifies. */
  read(offset: number, psize: number, verify: Verify): Promise<Buffer>;
  /** Make every completed write durable on every child. */
  flush(): Promise<void>;
  state(): VdevState;
  leaves(): Leaf[];
  config(): VdevConfig;
  close(): Promise<void>;
}
