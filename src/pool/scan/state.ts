/**
 * Persisted scan state (ZFS's dsl_scan_phys_t, DTLs and the error log),
 * kept in the MOS root and rewritten every txg.
 */

/** Where a scan resumes: dataset id (0 = pool metadata), part (snapshot createTxg, HEAD_PART for the head), next level-0 blkid. */
export interface Bookmark {
  ds: number;
  part: number;
  blkid: number;
}

export const HEAD_PART = Number.MAX_SAFE_INTEGER;

export type ScanFunc = 'scrub' | 'resilver';

export interface ScanStateJson {
  func: ScanFunc;
  state: 'scanning' | 'finished' | 'canceled';
  paused: boolean;
  /** Only blocks born after this txg are visited (resilver by DTL; 0 = everything). */
  minBirth: number;
  /** Blocks born after this txg were written after the scan started (they are already complete). */
  maxTxg: number;
  startTime: number;
  endTime: number | null;
  /** Bytes allocated when the scan started (what it has to look at). */
  toExamine: number;
  /** Allocated bytes of the blocks the traversal visited. */
  examined: number;
  /** Physical bytes read and verified. */
  issued: number;
  /** Bytes rewritten (self-healing or resilvering). */
  repaired: number;
  /** Blocks that could not be read from any copy. */
  errors: number;
  bookmark: Bookmark;
  /** Time spent scanning while the pool was open (ms), for the rate. */
  activeMs: number;
}

/** One unrecoverable block (`pool status -v`). */
export interface ErrlogEntry {
  /** Dataset name (or '<metadata>'). */
  dataset: string;
  /** Snapshot createTxg when the block was found in a snapshot's tree only. */
  snapshot?: string;
  level: number;
  /** First level-0 block covered. */
  blkid: number;
  /** Level-0 blocks covered (1 for a data block). */
  span: number;
  blockSize: number;
  txg: number;
}

export interface ScanPersist {
  scan: ScanStateJson | null;
  /** Leaf guid -> the last txg whose blocks it surely has (DTL by birth txg). */
  dtl: Record<string, number>;
  errlog: ErrlogEntry[];
  /** Error counters per leaf guid, so `pool status` keeps them across imports until `clear`. */
  leafErrors: Record<string, { read: number; write: number; cksum: number }>;
}

export function emptyScanPersist(): ScanPersist {
  return { scan: null, dtl: {}, errlog: [], leafErrors: {} };
}

export const ERRLOG_MAX = 1000;
