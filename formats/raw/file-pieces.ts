/**
 * Reading many pieces of one file with few system calls: pieces whose file
 * ranges follow each other in ascending order, or leave a gap of at most
 * GAP_MAX bytes between them, are read by one preadv (a gap is read into a
 * scratch buffer and dropped).
 *
 * Why: a read handed to libuv's thread pool costs the thread that submits
 * it about 0.1 ms on a busy 2-core machine (waking a pool thread that then
 * competes for the cores), whatever the read's size. A 1 GiB qcow2->raw
 * convert of 1 MiB data runs paid 55-65 ms of its ~450 ms for that alone;
 * with 8 MiB per submission the submissions cost 10-20 ms (bench/README).
 * Bridging gaps is cheap by comparison: reading a hole or a neighbouring
 * cluster is a copy in the pool thread, on the other core.
 *
 * Bytes past the end of the file read as zeroes (a sparse or truncated
 * tail), as both raw and qcow2 guest reads expect.
 */
import fs from 'node:fs';
import { err, settleAll } from '../../src/errors.js';

/** One piece: `buf.length` bytes of the file from `pos`. */
export interface FilePiece {
  pos: number;
  buf: Buffer;
}

/** Largest gap between two pieces still read by the same call. */
export const GAP_MAX = 64 * 1024;
/** Bytes per call at most (gaps included). */
const GROUP_MAX = 64 * 1024 * 1024;
/** Buffers per call at most (well under Linux's IOV_MAX of 1024). */
const IOV_MAX = 512;

/**
 * Where gaps are read to. Shared: its contents are never looked at, so
 * concurrent reads into it are harmless (allocUnsafeSlow touches no page
 * until a gap is read).
 */
const GAP_SINK = Buffer.allocUnsafeSlow(GAP_MAX);

function readvAsync(fd: number, iov: Buffer[], pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.readv(fd, iov, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/** The iov entries from byte `skip` of `iov` on (for a short read's remainder). */
function sliceIov(iov: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of iov) {
    if (skip >= b.length) skip -= b.length;
    else {
      out.push(skip ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return out;
}

/** Read one group (file offset `pos`, `iov` back to back) until full or EOF; the rest reads as zeroes. */
async function readGroup(fd: number, iov: Buffer[], pos: number, total: number, sync: boolean): Promise<void> {
  let done = 0;
  while (done < total) {
    const rest = done ? sliceIov(iov, done) : iov;
    const n = sync ? fs.readvSync(fd, rest, pos + done) : await readvAsync(fd, rest, pos + done);
    if (n === 0) break;
    done += n;
  }
  if (done < total) for (const b of sliceIov(iov, done)) b.fill(0);
}

/**
 * Read `pieces` (ascending, non-overlapping file ranges). Groups of at most
 * `syncMax` bytes are read synchronously (memory file systems: see
 * memory-backed.ts), larger ones in the thread pool, all groups at once.
 */
export function readPieces(fd: number, pieces: readonly FilePiece[], syncMax: number): Promise<void> {
  // Node's readv turns a position that is not a safe integer into -1, "read
  // at the current file position": a corrupt offset would read wrong bytes.
  for (const p of pieces) {
    if (!(p.pos >= 0 && Number.isSafeInteger(p.pos + p.buf.length))) return Promise.reject(err.inval(`read at file offset ${p.pos}: out of range`));
  }
  const groups: Array<Promise<void>> = [];
  let i = 0;
  while (i < pieces.length) {
    const start = pieces[i]!.pos;
    const iov: Buffer[] = [pieces[i]!.buf];
    let end = start + pieces[i]!.buf.length;
    for (i++; i < pieces.length && iov.length < IOV_MAX - 1; i++) {
      const p = pieces[i]!;
      const gap = p.pos - end;
      if (gap < 0 || gap > GAP_MAX || p.pos + p.buf.length - start > GROUP_MAX) break;
      if (gap > 0) iov.push(GAP_SINK.subarray(0, gap));
      iov.push(p.buf);
      end = p.pos + p.buf.length;
    }
    // A group small enough runs to completion here (readGroup awaits nothing then).
    groups.push(readGroup(fd, iov, start, end - start, end - start <= syncMax));
  }
  return groups.length === 1 ? groups[0]! : settleAll(groups);
}
