/**
 * ReplyWriter: encodes simple and structured replies and hands them to the
 * socket once per event-loop turn, so the replies of every request that
 * completed in one turn leave in one writev (measured: +34% on 4 KiB
 * writes versus one syscall per reply).
 *
 * Small messages (reply headers, errors, small read replies with their
 * data) are packed back to back into a pooled slab: a turn's worth of them
 * is one contiguous buffer and one stream.write(), not one stream write per
 * reply. Large read payloads are queued by reference (no copy) right after
 * their header. The slab is only ever appended to, so bytes already handed
 * to the socket are never overwritten; a full slab goes back to the pool
 * once the socket has written all of it.
 *
 * A reply is always queued as whole messages in one call sequence, so
 * chunks of different requests can interleave only at message boundaries.
 * `done` callbacks run once the socket has written the reply (or failed
 * to), which is when Transmission stops charging the request's memory.
 */
import type { Duplex } from 'node:stream';
import type { BufferPool } from './buffer-pool.js';
import * as C from './constants.js';

export interface Handle {
  hi: number;
  lo: number;
}

type WriteCb = (err?: Error | null) => void;

/** Read replies up to this size are copied into the slab instead of being queued as a separate buffer. */
export const COPY_MAX = 16 * 1024;
const SLAB = 128 * 1024;

class Slab {
  /** Next free byte. */
  pos = 0;
  /** Start of the bytes not yet queued to the socket. */
  start = 0;
  /** Segments queued to the socket and not yet written. */
  writing = 0;
  /** No longer appended to: back to the pool once `writing` drops to 0. */
  retired = false;
  /** Callbacks waiting for the open segment [start, pos) to be written. */
  dones: WriteCb[] | null = null;
  constructor(readonly buf: Buffer) {}
}

const NO_SLAB = new Slab(Buffer.alloc(0));

export class ReplyWriter {
  /** Allocated at the first small message (an idle connection holds none). */
  private slab: Slab = NO_SLAB;
  /** Pieces for this turn, in order, with their callbacks. */
  private queue: Buffer[] = [];
  private cbs: (WriteCb | undefined)[] = [];
  private scheduled = false;
  private ended = false;

  constructor(
    private readonly stream: Duplex,
    private readonly pool: BufferPool,
  ) {}

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  /** Reserve n bytes at the end of the slab; returns their offset in `this.slab.buf`. */
  private room(n: number): number {
    let s = this.slab;
    if (s.buf.length - s.pos < n) {
      this.seal();
      this.retire(s);
      s = this.slab = new Slab(this.pool.get(Math.max(SLAB, n)));
    }
    this.schedule();
    const at = s.pos;
    s.pos += n;
    return at;
  }

  private retire(s: Slab): void {
    if (s === NO_SLAB) return;
    s.retired = true;
    if (s.writing === 0) this.pool.put(s.buf);
  }

  /** Queue the slab's open segment (if any) as one piece. */
  private seal(): void {
    const s = this.slab;
    if (s.pos === s.start) return;
    const seg = s.buf.subarray(s.start, s.pos);
    const dones = s.dones;
    s.start = s.pos;
    s.dones = null;
    s.writing++;
    this.queue.push(seg);
    this.cbs.push((e) => {
      if (--s.writing === 0 && s.retired) this.pool.put(s.buf);
      if (dones) for (const d of dones) d(e);
    });
  }

  private whenSegmentWritten(done: WriteCb): void {
    const s = this.slab;
    if (s.dones) s.dones.push(done);
    else s.dones = [done];
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    this.seal();
    const q = this.queue;
    const cbs = this.cbs;
    const n = q.length;
    if (n === 0) return;
    this.queue = [];
    this.cbs = [];
    const st = this.stream;
    if (st.destroyed || st.writableEnded) {
      const e = new Error('connection closed');
      for (const cb of cbs) cb?.(e);
      return;
    }
    if (n === 1) {
      st.write(q[0]!, cbs[0]);
      return;
    }
    st.cork();
    for (let i = 0; i < n; i++) st.write(q[i]!, cbs[i]);
    st.uncork();
  };

  /** Hand everything queued to the socket now, then end it (FIN after the last reply). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.flush();
    // Nothing is appended any more: the slab goes back to the pool once written.
    this.retire(this.slab);
    this.slab = NO_SLAB;
    if (!this.stream.destroyed) this.stream.end();
  }

  /** Queue bytes already encoded (by reference); cb runs once the socket is done with them. */
  write(buf: Buffer, cb?: WriteCb): void {
    if (this.ended) {
      cb?.(new Error('connection closed'));
      return;
    }
    this.seal();
    this.queue.push(buf);
    this.cbs.push(cb);
    this.schedule();
  }

  simple(h: Handle, error: number): void {
    const at = this.room(C.SIMPLE_REPLY_SIZE);
    ReplyWriter.simpleHeader(this.slab.buf, at, h, error);
  }

  /** A final NBD_REPLY_TYPE_NONE chunk: success of a structured reply with no payload. */
  done(h: Handle): void {
    const at = this.room(C.STRUCTURED_REPLY_SIZE);
    ReplyWriter.chunkHeader(this.slab.buf, at, h, C.REPLY_FLAG_DONE, C.REPLY_TYPE_NONE, 0);
  }

  /** A final NBD_REPLY_TYPE_ERROR chunk with a human-readable message. */
  structuredError(h: Handle, error: number, message: string): void {
    const msg = Buffer.from(message.slice(0, 512), 'utf8');
    const at = this.room(C.STRUCTURED_REPLY_SIZE + 6 + msg.length);
    const b = this.slab.buf;
    ReplyWriter.chunkHeader(b, at, h, C.REPLY_FLAG_DONE, C.REPLY_TYPE_ERROR, 6 + msg.length);
    b.writeUInt32BE(error, at + 20);
    b.writeUInt16BE(msg.length, at + 24);
    msg.copy(b, at + 26);
  }

  /**
   * A successful simple READ reply carrying data[0, length). Returns true
   * when the data was copied (the caller may reuse `data` at once);
   * otherwise `data` is queued by reference and must stay untouched until
   * `done` runs. `done` runs once the reply is written, in both cases.
   */
  simpleData(h: Handle, data: Buffer, length: number, done: WriteCb): boolean {
    const copy = length <= COPY_MAX;
    const at = this.room(C.SIMPLE_REPLY_SIZE + (copy ? length : 0));
    const b = this.slab.buf;
    ReplyWriter.simpleHeader(b, at, h, 0);
    return this.payload(data, length, copy, at + C.SIMPLE_REPLY_SIZE, done);
  }

  /** One OFFSET_DATA chunk carrying data[0, length) at `offset`; same contract as simpleData(). */
  offsetData(h: Handle, offset: number, data: Buffer, length: number, last: boolean, done: WriteCb): boolean {
    const H = C.STRUCTURED_REPLY_SIZE + 8;
    const copy = length <= COPY_MAX;
    const at = this.room(H + (copy ? length : 0));
    ReplyWriter.dataHeader(this.slab.buf, at, h, offset, length, last);
    return this.payload(data, length, copy, at + H, done);
  }

  private payload(data: Buffer, length: number, copy: boolean, at: number, done: WriteCb): boolean {
    if (copy) {
      data.copy(this.slab.buf, at, 0, length);
      this.whenSegmentWritten(done);
      return true;
    }
    this.write(length === data.length ? data : data.subarray(0, length), done);
    return false;
  }

  static simpleHeader(buf: Buffer, at: number, h: Handle, error: number): void {
    buf.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, at);
    buf.writeUInt32BE(error, at + 4);
    buf.writeUInt32BE(h.hi, at + 8);
    buf.writeUInt32BE(h.lo, at + 12);
  }

  static chunkHeader(buf: Buffer, at: number, h: Handle, flags: number, type: number, length: number): void {
    buf.writeUInt32BE(C.STRUCTURED_REPLY_MAGIC, at);
    buf.writeUInt16BE(flags, at + 4);
    buf.writeUInt16BE(type, at + 6);
    buf.writeUInt32BE(h.hi, at + 8);
    buf.writeUInt32BE(h.lo, at + 12);
    buf.writeUInt32BE(length, at + 16);
  }

  /** One chunk header for an OFFSET_HOLE. */
  static hole(h: Handle, offset: number, length: number, last: boolean): Buffer {
    const b = Buffer.allocUnsafe(C.STRUCTURED_REPLY_SIZE + 12);
    ReplyWriter.chunkHeader(b, 0, h, last ? C.REPLY_FLAG_DONE : 0, C.REPLY_TYPE_OFFSET_HOLE, 12);
    writeU64(b, 20, offset);
    b.writeUInt32BE(length, 28);
    return b;
  }

  /** Header (20) + offset (8) of an OFFSET_DATA chunk carrying `length` bytes. */
  static dataHeader(buf: Buffer, at: number, h: Handle, offset: number, length: number, last: boolean): void {
    ReplyWriter.chunkHeader(buf, at, h, last ? C.REPLY_FLAG_DONE : 0, C.REPLY_TYPE_OFFSET_DATA, 8 + length);
    writeU64(buf, at + 20, offset);
  }
}

export function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 0x100000000), at);
  b.writeUInt32BE(v >>> 0, at + 4);
}
