/**
 * The intent log (ZFS's ZIL): sync writes (NBD FLUSH/FUA, SCSI SYNCHRONIZE
 * CACHE/FUA, sync=always) are durable when acknowledged without forcing a
 * whole txg to disk.
 *
 * Theory. Every volume write, zero and trim also becomes an in-memory log
 * record tagged with its txg. commit() writes the records not yet logged as
 * a chain of log blocks and flushes the devices they landed on; that is all
 * a flush costs. Each block carries the location of the next one (allocated
 * in advance), so the chain needs no other metadata. When txg T commits, its
 * records are in the pool proper: they leave memory, and log blocks that hold
 * only records of txg <= T are freed.
 *
 * The MOS root of txg T names the first log block that may hold a record of a
 * later txg (or the pre-allocated tail). Import walks the chain from there,
 * replays the records of txgs after T in order, and syncs a txg.
 *
 * Ordering rules:
 *  - Records are appended in completion order; txgs along the chain never
 *    decrease, so "blocks before the first one with a record > T" is a prefix.
 *  - A commit acknowledges only after every block it wrote and the devices
 *    are flushed; a block that did not make it ends the chain at replay.
 *  - Log blocks are metadata for the allocator: not in the space map, claimed
 *    at import by walking the chain, freed (deferred) once obsolete.
 */
import { randomBytes } from 'node:crypto';
import { err } from '../../errors.js';
import type { Dva } from '../blkptr.js';
import type { Allocation } from '../io/allocate.js';
import type { TopVdev } from '../vdev/types.js';
import { decodeLogBlock, encodeLogBlock, LOG_HEADER, LOG_TRAILER, REC_HEADER, recordSize, type LogRecord } from './log-block.js';

export interface ZilHeader {
  /** Random per chain (each import starts a new one). */
  chain: string;
  head: Dva;
  seq: number;
}

const MIN_BLOCK = 8 * 1024;
const MAX_BLOCK = 1024 * 1024;

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

export interface ZilStats {
  commits: number;
  blocks: number;
  bytes: number;
  records: number;
}

export class IntentLog {
  private pending: LogRecord[] = [];
  private chain: { dva: Dva; psize: number; seq: number; maxTxg: number }[] = [];
  /** Pre-allocated next block: where it is (real allocated size) and its block size. */
  private tail: { dva: Dva; psize: number; seq: number };
  private committing: Promise<void> | null = null;
  private nextSize = 64 * 1024;
  readonly stats: ZilStats = { commits: 0, blocks: 0, bytes: 0, records: 0 };
  private readonly chainId = randomBytes(8).readBigUInt64LE(0);

  constructor(
    private tops: TopVdev[],
    private alloc: Allocation,
    private poolGuid: bigint,
    private openTxg: () => number,
  ) {
    const psize = roundUp(this.nextSize, 4096);
    this.tail = { dva: this.alloc.allocLog(psize), psize, seq: 1 };
  }

  private pendingBytesN = 0;

  /** Record an operation (the data buffer must not change afterwards). */
  log(rec: LogRecord): void {
    this.pending.push(rec);
    this.pendingBytesN += recordSize(rec);
  }

  /** Bytes a commit would write now. */
  pendingBytes(): number {
    return this.pendingBytesN;
  }

  /** Make every record logged so far durable. */
  async commit(): Promise<void> {
    while (this.committing) await this.committing;
    if (this.pending.length === 0) return;
    this.committing = this.write().finally(() => (this.committing = null));
    await this.committing;
  }

  private async write(): Promise<void> {
    const recs = this.pending.splice(0);
    this.pendingBytesN = 0;
    // Pack records into blocks, splitting writes that do not fit.
    const blocks: LogRecord[][] = [];
    let cur: LogRecord[] = [];
    let size = this.tail.psize;
    let room = size - LOG_HEADER - LOG_TRAILER;
    const sizes: number[] = [];
    const total = recs.reduce((n, r) => n + recordSize(r), 0);
    const close = () => {
      blocks.push(cur);
      sizes.push(size);
      cur = [];
      // The next block is sized for what is left, within bounds.
      size = Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, roundUp(Math.min(total, MAX_BLOCK) + LOG_HEADER + LOG_TRAILER + REC_HEADER, 4096)));
      room = size - LOG_HEADER - LOG_TRAILER;
    };
    for (let r of recs) {
      while (recordSize(r) > room) {
        // Split a record only when even an empty largest block cannot hold it. A record
        // is one volume block's data; split across two log blocks, a crash that keeps
        // the first and loses the second replayed half a block (torn: neither old nor
        // new). Otherwise start it in the next block (this one may go out empty).
        if (r.op === 'write' && room > REC_HEADER + 512 && cur.length === 0 && size >= MAX_BLOCK) {
          const n = room - REC_HEADER;
          cur.push({ ...r, length: n, data: r.data!.subarray(0, n) });
          r = { ...r, offset: r.offset + n, length: r.length - n, data: r.data!.subarray(n) };
        }
        close();
      }
      cur.push(r);
      room -= recordSize(r);
    }
    if (cur.length) close();
    // Allocate every block's successor, then write them all and flush.
    const written: { dva: Dva; psize: number; seq: number; maxTxg: number }[] = [];
    const touched = new Set<number>();
    const writes: Promise<void>[] = [];
    let at = this.tail;
    for (let i = 0; i < blocks.length; i++) {
      const nextSize = roundUp(i + 1 < blocks.length ? sizes[i + 1]! : this.nextSize, 4096);
      const next = { dva: this.alloc.allocLog(nextSize), psize: nextSize, seq: at.seq + 1 };
      // The pointer to the next block carries its block size (psize); its allocated size follows from the vdev.
      const buf = encodeLogBlock(at.psize, this.poolGuid, { chain: this.chainId, seq: at.seq, next: { vdev: next.dva.vdev, offset: next.dva.offset, asize: next.psize }, records: blocks[i]!, commitEnd: i === blocks.length - 1 });
      writes.push(this.tops[at.dva.vdev]!.write(at.dva.offset, buf));
      touched.add(at.dva.vdev);
      written.push({ dva: at.dva, psize: at.psize, seq: at.seq, maxTxg: Math.max(...blocks[i]!.map((r) => r.txg)) });
      this.stats.bytes += buf.length;
      at = next;
    }
    this.tail = at;
    // Join the chain in the same tick the tail moves past these blocks: a txg
    // sync while they are in flight must name the first of them in its MOS root
    // (header()). Pushed after the await, header() named the new, unwritten
    // tail, and a crash lost every acknowledged record in these blocks whose
    // txg had not committed (found by test/pool/engine/crash.test.ts).
    this.chain.push(...written);
    this.nextSize = Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, roundUp(total + LOG_HEADER + LOG_TRAILER, 4096)));
    try {
      await Promise.all(writes);
      await Promise.all([...touched].map((v) => this.tops[v]!.flush()));
    } catch (e) {
      throw err.io(`intent log write failed: ${(e as Error).message}`, e);
    }
    this.stats.commits++;
    this.stats.blocks += written.length;
    this.stats.records += recs.length;
  }

  /** For the MOS root of txg `txg`: where replay must start. */
  header(txg: number): ZilHeader {
    const first = this.chain.find((b) => b.maxTxg > txg);
    const chain = this.chainId.toString(16);
    if (first) return { chain, head: { vdev: first.dva.vdev, offset: first.dva.offset, asize: first.psize }, seq: first.seq };
    return { chain, head: { vdev: this.tail.dva.vdev, offset: this.tail.dva.offset, asize: this.tail.psize }, seq: this.tail.seq };
  }

  /**
   * Txg `txg` committed (its MOS root names header(txg)): drop its records
   * and free the log blocks that hold nothing newer. Frees are deferred
   * like any other, in the open txg.
   */
  synced(txg: number): void {
    this.pending = this.pending.filter((r) => r.txg > txg);
    this.pendingBytesN = this.pending.reduce((n, r) => n + recordSize(r), 0);
    let n = 0;
    while (n < this.chain.length && this.chain[n]!.maxTxg <= txg) n++;
    const gone = this.chain.splice(0, n);
    if (gone.length) this.alloc.freeDvas(gone.map((b) => b.dva), this.openTxg(), false);
  }

  /** Everything the log holds on disk (for tests and `pool status`). */
  outstanding(): number {
    return this.chain.length;
  }
}

/**
 * Walk a chain from its header: claim every valid block (and nothing else)
 * and return the records of txgs after `committed`, in order, plus the
 * blocks to free once the replay is committed.
 */
export async function readChain(
  tops: TopVdev[],
  alloc: Allocation,
  poolGuid: bigint,
  header: ZilHeader,
  committed: number,
): Promise<{ records: LogRecord[]; blocks: Dva[] }> {
  const chain = BigInt('0x' + header.chain);
  const records: LogRecord[] = [];
  /** Records of the commit being read, not yet known to be whole. */
  const open: LogRecord[] = [];
  const blocks: Dva[] = [];
  let at: Dva = header.head;
  let seq = header.seq;
  for (let guard = 0; guard < 1_000_000; guard++) {
    // In chain pointers the size field is the block size (psize).
    const top = tops[at.vdev];
    const psize = at.asize;
    if (!top || psize <= 0 || psize > MAX_BLOCK || psize % 4096 !== 0 || at.offset + top.asize(psize) > top.capacity) break;
    const real: Dva = { vdev: at.vdev, offset: at.offset, asize: top.asize(psize) };
    let buf: Buffer;
    try {
      // Read without verification: the end of a chain is normally garbage, not a device error.
      buf = await top.read(at.offset, psize, () => true);
    } catch {
      break; // unwritten, torn or unreadable: the chain ends here
    }
    const blk = decodeLogBlock(buf, poolGuid, chain, seq);
    if (!blk) break;
    try {
      alloc.claim(real);
    } catch {
      break; // overlaps live data: a stale pointer, not part of this chain
    }
    blocks.push(real);
    // A commit's records count once its last block is here (see log-block.ts).
    for (const r of blk.records) if (r.txg > committed) open.push(r);
    if (blk.commitEnd) records.push(...open.splice(0));
    at = blk.next;
    seq++;
  }
  return { records, blocks };
}
