/**
 * Transmission phase of one connection: parse requests straight out of
 * socket chunks, run them concurrently against the export's device, and
 * send replies (possibly out of order) through the ReplyWriter.
 *
 * Invariants:
 * - Parsing never copies a request header or a write payload that lies
 *   whole inside one socket chunk; payloads split across chunks are
 *   assembled in a pooled buffer.
 * - Bounded memory: every request is charged its payload/reply bytes plus
 *   a fixed overhead from header parse until its reply has been written;
 *   above maxInflight the socket is paused (TCP backpressure reaches the
 *   client) and resumed below half of it. Write payloads over the maximum
 *   are discarded as they stream in and answered with EINVAL.
 * - READs of GATED_READ_MIN or more wait for the connection's ReadGate
 *   (at most READ_AHEAD bytes between device and written reply), so
 *   replies leave while their bytes are still in the CPU caches.
 * - FLUSH calls device.flush(), which covers every write any connection
 *   completed before it (BlockDevice durability contract), so
 *   CAN_MULTI_CONN is advertised exactly when the device says multiConn.
 * - A reply is sent only after the device operation resolved; FUA is
 *   passed down so the device makes the data durable first.
 * - Any protocol violation (bad magic) closes this connection only.
 */
import type { Duplex } from 'node:stream';
import type { BlockDevice, BlockDeviceInfo, Extent, WriteOptions } from '../device/block-device.js';
import { err, settleAll } from '../errors.js';
import * as C from './constants.js';
import { nbdErrno } from './errno.js';
import type { BufferPool } from './buffer-pool.js';
import { ReplyWriter, type Handle } from './reply-writer.js';
import type { NbdLogger } from './types.js';
import type { OnreadFeed } from './onread-feed.js';
import { ReadGate } from './read-gate.js';

/** Reads below this size skip the block-status lookup and go out as one data chunk. */
const SPARSE_READ_MIN = 64 * 1024;
/**
 * onread: after a WRITE at least this large, the next read takes only a
 * request header, so the following payload (likely as large) is read
 * straight into its own buffer instead of partly into the staging buffer
 * and copied out. Smaller writes keep batching many requests per read.
 */
const HEADER_ONLY_AFTER = 128 * 1024;
/** READs at least this large take their length from the connection's ReadGate. */
const GATED_READ_MIN = 256 * 1024;
/** Bytes of gated READs a connection may have between the device and a written reply (see ReadGate). */
const READ_AHEAD = 4 * 1024 * 1024;
/** Fixed charge per request so floods of payload-less commands are bounded too. */
const REQUEST_OVERHEAD = 4096;
/** How long a closed connection waits for the client's FIN before it is destroyed. */
const CLOSE_GRACE_MS = 5000;
/** Write options, shared (devices only read them). */
const FUA: WriteOptions = Object.freeze({ fua: true });
const NO_FUA: WriteOptions = Object.freeze({ fua: false });
const OWNED_FUA: WriteOptions = Object.freeze({ fua: true, owned: true });
const OWNED: WriteOptions = Object.freeze({ fua: false, owned: true });
/** Most extents returned by one BLOCK_STATUS reply. */
const MAX_EXTENTS = 4096;

const enum State {
  Header,
  Payload,
  Discard,
  Stopped,
}

/**
 * One request from header parse to reply. A class, not object literals:
 * every request then has the same hidden class (V8 gave each
 * `{ ...req, buf, fill }` spread a fresh map, which turned every property
 * access on the hot path into an IC miss: measured ~15% of the CPU of 4 KiB
 * writes). The handle's two halves live on the request itself, so the
 * request doubles as the reply writer's Handle.
 */
class Request implements Handle {
  /** WRITE: the pooled buffer the payload is assembled in (null while not needed). */
  buf: Buffer | null = null;
  /** WRITE: payload bytes received so far. */
  fill = 0;
  /** WRITE: the payload is handed to the device (WriteOptions.owned); a pooled buf comes back only through WriteOptions.release. */
  owned = false;
  /** READ: bytes taken from the connection's ReadGate, given back at finish(). */
  gated = 0;
  constructor(
    readonly type: number,
    readonly flags: number,
    readonly hi: number,
    readonly lo: number,
    readonly offset: number,
    readonly length: number,
    readonly cost: number,
  ) {}
}

type PendingWrite = Request;

export interface TransmissionOptions {
  device: BlockDevice;
  info: BlockDeviceInfo;
  structured: boolean;
  metaContext: boolean;
  transmissionFlags: number;
  maxRequest: number;
  maxInflight: number;
  pool: BufferPool;
  log: NbdLogger;
  logContext: object;
}

export class Transmission {
  private state = State.Header;
  private readonly hdr = Buffer.allocUnsafe(C.REQUEST_SIZE);
  private hdrFill = 0;
  private pending: PendingWrite | null = null;
  private discardLeft = 0;
  private discardReq: Request | null = null;
  private inflight = 0;
  private inflightBytes = 0;
  private paused = false;
  private draining = false;
  private ending = false;
  private readonly writer: ReplyWriter;
  private readonly readGate = new ReadGate(READ_AHEAD);
  private readonly minBlock: number;
  private readonly size: number;
  private readonly closed: Promise<void>;
  private idle: (() => void) | null = null;
  private feed: OnreadFeed | null = null;
  /** onread: the write whose payload buffer the pending socket read targets. */
  private direct: PendingWrite | null = null;
  /** onread: the last request parsed was a WRITE of at least HEADER_ONLY_AFTER bytes. */
  private bigWrites = false;
  /** Writes at least this large are handed over to the device (info.keepsPayload, WriteOptions.owned); 0: never. */
  private readonly ownFrom: number;

  constructor(
    private readonly stream: Duplex,
    private readonly o: TransmissionOptions,
  ) {
    this.writer = new ReplyWriter(stream, o.pool);
    this.minBlock = Math.max(1, o.info.minBlockSize);
    this.size = o.info.size;
    this.ownFrom = o.info.keepsPayload ? Math.max(1, o.info.blockSize) : 0;
    this.closed = new Promise<void>((resolve) => (stream.destroyed ? resolve() : stream.once('close', () => resolve())));
    stream.on('error', (e) => o.log.debug({ ...o.logContext, err: e.message }, 'nbd connection error'));
    const gone = () => {
      // Client closed its side without NBD_CMD_DISC: finish what it sent, then close.
      this.stopReading();
      this.endWhenIdle();
    };
    stream.on('end', gone);
    stream.on('close', gone);
    // The client may have gone between the handshake and now.
    if (stream.destroyed || stream.readableEnded) queueMicrotask(gone);
  }

  /** Start parsing: from 'data' events, or from an onread feed (plain TCP, see onread-feed.ts). */
  start(leftover: Buffer, feed: OnreadFeed | null = null): void {
    if (leftover.length) this.consume(leftover, false);
    if (feed) {
      this.feed = feed;
      feed.next = this.nextReadBuffer;
      feed.sink = this.onRead;
    } else {
      this.stream.on('data', this.onData);
    }
    this.stream.resume();
  }

  /**
   * onread: the buffer the next socket read lands in. During a write
   * payload that is the rest of the payload's own buffer, so those bytes
   * are never copied and the read stops exactly at the payload's end.
   */
  private readonly nextReadBuffer = (): Buffer => {
    const w = this.pending;
    if (this.state === State.Payload && w) {
      if (!w.buf) w.buf = this.payloadBuffer(w);
      this.direct = w;
      return w.buf.subarray(w.fill, w.length);
    }
    this.direct = null;
    const staging = this.feed!.staging;
    if (this.bigWrites && this.state === State.Header) return staging.subarray(0, C.REQUEST_SIZE - this.hdrFill);
    return staging;
  };

  private readonly onRead = (n: number): void => {
    const w = this.direct;
    if (!w) return this.consume(this.feed!.staging.subarray(0, n), true);
    if (this.pending !== w) return; // the request was dropped meanwhile (client went away)
    w.fill += n;
    if (w.fill === w.length) {
      this.pending = null;
      this.state = State.Header;
      void this.write(w, w.buf!.subarray(0, w.length), w.buf);
    }
  };

  /** Resolves when the socket is closed and no request is running. */
  async finished(): Promise<void> {
    await this.closed;
    await this.waitIdle();
  }

  /**
   * Graceful shutdown: requests already running finish and get their
   * replies; requests that arrive from now on get ESHUTDOWN; once idle the
   * device is flushed and the connection closed.
   */
  drain(): void {
    this.draining = true;
    this.endWhenIdle();
  }

  destroy(): void {
    this.state = State.Stopped;
    this.stream.destroy();
  }

  private waitIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.idle;
      this.idle = () => {
        prev?.();
        resolve();
      };
    });
  }

  private stopReading(): void {
    this.state = State.Stopped;
    this.stream.off('data', this.onData);
    if (this.feed) {
      // Nothing more is parsed; later reads (a client talking after DISC) land in staging and are ignored.
      this.feed.next = () => this.feed!.staging;
      this.feed.sink = () => {};
      this.direct = null;
    }
    // A write whose payload will never arrive (client gone mid-payload):
    // drop it without touching the device, and stop charging for it.
    const w = this.pending;
    if (w) {
      this.pending = null;
      // If a socket read may still land in w.buf (onread), leave it to the GC rather than the pool.
      if (w.buf && !this.feed && !w.owned) this.o.pool.put(w.buf);
      this.finish(w);
    }
    const d = this.discardReq;
    if (d) {
      this.discardReq = null;
      this.finish(d);
    }
  }

  private endWhenIdle(): void {
    if (this.ending) return;
    this.ending = true;
    void this.waitIdle().then(async () => {
      if (this.draining) {
        try {
          await this.o.device.flush();
        } catch (e) {
          this.o.log.warn({ ...this.o.logContext, err: (e as Error).message }, 'nbd flush at shutdown failed');
        }
      }
      // end() shuts TLS down cleanly (close_notify) before the TCP FIN; a
      // client that never closes its side is cut off after a grace period.
      if (!this.stream.destroyed) {
        this.writer.end();
        setTimeout(() => this.stream.destroy(), CLOSE_GRACE_MS).unref();
      }
    });
  }

  // ---- parsing -----------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => this.consume(chunk, false);

  /**
   * Parse requests out of `chunk`. `transient` chunks (the onread staging
   * buffer) are overwritten by the next read, so payloads are copied out
   * of them; other chunks are never reused and may be referenced in place.
   */
  private consume(chunk: Buffer, transient: boolean): void {
    const n = chunk.length;
    let pos = 0;
    while (pos < n) {
      switch (this.state) {
        case State.Header: {
          if (this.hdrFill === 0 && n - pos >= C.REQUEST_SIZE) {
            this.header(chunk, pos);
            pos += C.REQUEST_SIZE;
          } else {
            const k = Math.min(C.REQUEST_SIZE - this.hdrFill, n - pos);
            chunk.copy(this.hdr, this.hdrFill, pos, pos + k);
            this.hdrFill += k;
            pos += k;
            if (this.hdrFill === C.REQUEST_SIZE) {
              this.hdrFill = 0;
              this.header(this.hdr, 0);
            }
          }
          break;
        }
        case State.Payload: {
          const w = this.pending!;
          const k = Math.min(w.length - w.fill, n - pos);
          if (w.fill === 0 && k === w.length && !transient) {
            // Whole payload inside this chunk: hand the device a view, no copy. The chunk
            // is never reused, so a device that keeps payloads may keep this view too.
            w.owned = this.ownFrom > 0 && w.length >= this.ownFrom;
            this.pending = null;
            this.state = State.Header;
            void this.write(w, chunk.subarray(pos, pos + k), null);
          } else {
            if (!w.buf) w.buf = this.payloadBuffer(w);
            chunk.copy(w.buf, w.fill, pos, pos + k);
            w.fill += k;
            if (w.fill === w.length) {
              this.pending = null;
              this.state = State.Header;
              void this.write(w, w.buf.subarray(0, w.length), w.buf);
            }
          }
          pos += k;
          break;
        }
        case State.Discard: {
          const k = Math.min(this.discardLeft, n - pos);
          this.discardLeft -= k;
          pos += k;
          if (this.discardLeft === 0) {
            this.state = State.Header;
            const r = this.discardReq!;
            this.discardReq = null;
            this.fail(r, r.length > this.o.maxRequest ? err.inval(`write of ${r.length} bytes exceeds the maximum of ${this.o.maxRequest}`) : err.shutdown());
            this.finish(r);
          }
          break;
        }
        case State.Stopped:
          return;
      }
    }
  }

  private header(b: Buffer, at: number): void {
    if (b.readUInt32BE(at) !== C.REQUEST_MAGIC) {
      this.o.log.warn({ ...this.o.logContext }, 'nbd: bad request magic, closing connection');
      this.stopReading();
      this.stream.destroy();
      return;
    }
    const type = b.readUInt16BE(at + 6);
    const length = b.readUInt32BE(at + 24);
    const cost = REQUEST_OVERHEAD + (type === C.CMD_WRITE || type === C.CMD_READ ? Math.min(length, this.o.maxRequest) : 0);
    this.bigWrites = type === C.CMD_WRITE && length >= HEADER_ONLY_AFTER;
    const req = new Request(
      type,
      b.readUInt16BE(at + 4),
      b.readUInt32BE(at + 8),
      b.readUInt32BE(at + 12),
      b.readUInt32BE(at + 16) * 0x100000000 + b.readUInt32BE(at + 20),
      length,
      cost,
    );
    if (type === C.CMD_DISC) {
      // No reply; finish everything outstanding, then close (proto.md).
      this.stopReading();
      this.endWhenIdle();
      return;
    }
    this.begin(req);
    if (type === C.CMD_WRITE) {
      if (length === 0) {
        void this.write(req, Buffer.alloc(0), null);
      } else if (length > this.o.maxRequest || this.draining) {
        this.discardReq = req;
        this.discardLeft = length;
        this.state = State.Discard;
      } else {
        this.pending = req;
        this.state = State.Payload;
      }
      return;
    }
    if (type === C.CMD_READ) void this.read(req);
    else void this.run(req);
  }

  private begin(r: Request): void {
    this.inflight++;
    this.inflightBytes += r.cost;
    if (!this.paused && this.inflightBytes > this.o.maxInflight) {
      this.paused = true;
      this.stream.pause();
    }
  }

  private finish(r: Request): void {
    if (r.gated) {
      this.readGate.give(r.gated);
      r.gated = 0;
    }
    this.inflight--;
    this.inflightBytes -= r.cost;
    if (this.paused && this.inflightBytes <= this.o.maxInflight / 2) {
      this.paused = false;
      if (this.state !== State.Stopped) this.stream.resume();
    }
    if (this.inflight === 0 && this.idle) {
      const f = this.idle;
      this.idle = null;
      f();
    }
  }

  // ---- commands ----------------------------------------------------------

  private fail(r: Request, e: unknown): void {
    const errno = nbdErrno(e);
    if (errno === C.EIO) this.o.log.error({ ...this.o.logContext, cmd: r.type, offset: r.offset, length: r.length, err: e }, 'nbd request failed');
    if (this.o.structured) this.writer.structuredError(r, errno, (e as Error)?.message ?? String(e));
    else this.writer.simple(r, errno);
  }

  /** Common checks; throws the StorageError to reply with. */
  private check(r: Request, allowed: number): void {
    if (this.draining) throw err.shutdown();
    if (r.flags & ~(allowed | C.CMD_FLAG_FUA)) throw err.inval(`unsupported flags 0x${r.flags.toString(16)} for command ${r.type}`);
    if (this.minBlock > 1 && (r.offset % this.minBlock || r.length % this.minBlock)) {
      throw err.inval(`request is not aligned to the minimum block size ${this.minBlock}`);
    }
  }

  /**
   * Where a write payload is assembled: a pooled buffer. One handed over to the device
   * (keepsPayload devices, writes of a block or more: w.owned) comes back only through
   * WriteOptions.release (a pool volume: when its txg syncs), else it is the GC's. A
   * fresh 1 MiB payload for every such write made V8 start a full mark every ~64 MiB.
   */
  private payloadBuffer(w: PendingWrite): Buffer {
    if (this.ownFrom > 0 && w.length >= this.ownFrom) w.owned = true;
    return this.o.pool.get(w.length);
  }

  private async write(w: PendingWrite, data: Buffer, pooled: Buffer | null): Promise<void> {
    try {
      this.check(w, 0);
      // proto.md: writes beyond the end SHOULD fail with ENOSPC.
      if (w.offset + w.length > this.size) throw err.nospc(`write beyond the end of the export (${this.size} bytes)`);
      const fua = (w.flags & C.CMD_FLAG_FUA) !== 0;
      const opts = w.owned ? (pooled ? { fua, owned: true, release: () => this.o.pool.put(pooled) } : fua ? OWNED_FUA : OWNED) : fua ? FUA : NO_FUA;
      await this.o.device.write(w.offset, data, opts);
      this.writer.simple(w, 0);
    } catch (e) {
      this.fail(w, e);
    } finally {
      if (pooled && !w.owned) this.o.pool.put(pooled);
      this.finish(w);
    }
  }

  private async run(r: Request): Promise<void> {
    try {
      switch (r.type) {
        case C.CMD_FLUSH:
          this.check(r, 0);
          await this.o.device.flush();
          break;
        case C.CMD_TRIM:
          this.check(r, 0);
          await this.o.device.trim(r.offset, r.length, { fua: !!(r.flags & C.CMD_FLAG_FUA) });
          break;
        case C.CMD_WRITE_ZEROES: {
          const fast = this.o.transmissionFlags & C.FLAG_SEND_FAST_ZERO ? C.CMD_FLAG_FAST_ZERO : 0;
          this.check(r, C.CMD_FLAG_NO_HOLE | fast);
          if (r.offset + r.length > this.size) throw err.nospc(`write zeroes beyond the end of the export (${this.size} bytes)`);
          await this.o.device.writeZeroes(r.offset, r.length, {
            fua: !!(r.flags & C.CMD_FLAG_FUA),
            mayTrim: !(r.flags & C.CMD_FLAG_NO_HOLE),
            fastZero: !!(r.flags & C.CMD_FLAG_FAST_ZERO),
          });
          break;
        }
        case C.CMD_CACHE:
          this.check(r, 0);
          if (r.length > this.o.maxRequest) throw err.inval(`cache of ${r.length} bytes exceeds the maximum of ${this.o.maxRequest}`);
          await this.o.device.cache?.(r.offset, r.length);
          break;
        case C.CMD_BLOCK_STATUS:
          this.check(r, C.CMD_FLAG_REQ_ONE);
          if (!this.o.metaContext) throw err.inval('no metadata context was negotiated');
          await this.blockStatus(r);
          return;
        default:
          throw err.inval(`unknown command ${r.type}`);
      }
      this.writer.simple(r, 0);
    } catch (e) {
      this.fail(r, e);
    } finally {
      this.finish(r);
    }
  }

  private async read(r: Request): Promise<void> {
    let buf: Buffer | null = null;
    let owned = false; // true once the socket write callback will release buf and finish r
    try {
      this.check(r, this.o.structured ? C.CMD_FLAG_DF : 0);
      if (r.length > this.o.maxRequest) throw err.inval(`read of ${r.length} bytes exceeds the maximum of ${this.o.maxRequest}`);
      const len = r.length;
      if (len >= GATED_READ_MIN) {
        const now = this.readGate.tryTake(len);
        if (!now) await this.readGate.take(len);
        r.gated = len;
        // The client may have gone while this read waited: do not read for nobody.
        if (!now && this.stream.destroyed) throw err.shutdown('connection closed');
      }
      if (!this.o.structured) {
        buf = this.o.pool.get(len);
        await this.readInto(r.offset, len, buf, 0);
        owned = true;
        this.sendData(r, buf, len, false);
        return;
      }
      if (len === 0) {
        if (r.offset > this.size) throw err.inval('read beyond the end of the export');
        this.writer.done(r);
        return;
      }
      const extents = len >= SPARSE_READ_MIN && !(r.flags & C.CMD_FLAG_DF) ? await this.zeroExtents(r.offset, len) : null;
      if (!extents) {
        buf = this.o.pool.get(len);
        await this.readInto(r.offset, len, buf, 0);
        owned = true;
        this.sendData(r, buf, len, true);
        return;
      }
      const H = C.STRUCTURED_REPLY_SIZE + 8;
      // Sparse read: data extents are read into one buffer, zero extents
      // become OFFSET_HOLE chunks. Everything is read before anything is
      // sent, so the last chunk can carry REPLY_FLAG_DONE.
      buf = this.o.pool.get(len);
      const b = buf;
      // Every extent read settles before an error is answered: buf goes back to the pool
      // then, and a read still filling it would write into whatever the pool gives it to
      // next (a write payload lent to a pool volume until its txg syncs: onto the disk).
      await settleAll(extents.filter((e) => !e.zero).map((e) => this.readInto(e.offset, e.length, b, e.offset - r.offset)));
      owned = true;
      extents.forEach((e, i) => {
        const last = i === extents.length - 1;
        if (e.zero) {
          const hole = ReplyWriter.hole(r, e.offset, e.length, last);
          if (last) this.sendPooled(r, b, hole);
          else this.writer.write(hole);
          return;
        }
        const h = Buffer.allocUnsafe(H);
        ReplyWriter.dataHeader(h, 0, r, e.offset, e.length, last);
        this.writer.write(h);
        const at = e.offset - r.offset;
        if (last) this.sendPooled(r, b, b.subarray(at, at + e.length));
        else this.writer.write(b.subarray(at, at + e.length));
      });
    } catch (e) {
      this.fail(r, e);
    } finally {
      if (!owned) {
        if (buf) this.o.pool.put(buf);
        this.finish(r);
      }
    }
  }

  /** Queue the last piece of a read reply; the pooled buffer is recycled once the socket is done with it. */
  private sendPooled(r: Request, pooled: Buffer, piece: Buffer): void {
    this.writer.write(piece, () => {
      this.o.pool.put(pooled);
      this.finish(r);
    });
  }

  /**
   * A whole-data READ reply from pooled[0, len). Small replies are copied
   * into the reply slab, so the buffer is recycled at once; the request
   * stays charged until its reply is written either way.
   */
  private sendData(r: Request, pooled: Buffer, len: number, structured: boolean): void {
    let copied = false;
    const done = () => {
      if (!copied) this.o.pool.put(pooled);
      this.finish(r);
    };
    copied = structured ? this.writer.offsetData(r, r.offset, pooled, len, true, done) : this.writer.simpleData(r, pooled, len, done);
    if (copied) this.o.pool.put(pooled);
  }

  private async readInto(offset: number, length: number, buf: Buffer, at: number): Promise<void> {
    const into = at === 0 && buf.length === length ? buf : buf.subarray(at, at + length);
    const got = await this.o.device.read(offset, length, into);
    // A device may return its own buffer instead of filling ours.
    if (got.buffer !== into.buffer || got.byteOffset !== into.byteOffset) got.copy(into, 0, 0, length);
  }

  /**
   * Extents of [offset, offset+length) split into zero / data runs, or null
   * when it is all data (or the device cannot say): then one data chunk.
   */
  private async zeroExtents(offset: number, length: number): Promise<Extent[] | null> {
    let ext: Extent[];
    try {
      ext = await this.o.device.blockStatus(offset, length);
    } catch {
      return null; // reads still work; status is only an optimisation here
    }
    const out: Extent[] = [];
    let pos = offset;
    const end = offset + length;
    for (const e of ext) {
      if (e.offset !== pos || e.length <= 0) break; // not contiguous: trust only what came before
      const n = Math.min(e.length, end - pos);
      const last = out[out.length - 1];
      if (last && last.zero === e.zero) last.length += n;
      else out.push({ offset: pos, length: n, hole: e.hole, zero: e.zero });
      pos += n;
      if (pos >= end) break;
    }
    if (pos < end) {
      const last = out[out.length - 1];
      if (last && !last.zero) last.length += end - pos;
      else out.push({ offset: pos, length: end - pos, hole: false, zero: false });
    }
    return out.some((e) => e.zero) ? out : null;
  }

  private async blockStatus(r: Request): Promise<void> {
    if (r.length === 0) throw err.inval('block status of zero bytes');
    const ext = await this.o.device.blockStatus(r.offset, r.length);
    const end = r.offset + r.length;
    const desc: number[] = []; // pairs: length, flags
    let pos = r.offset;
    for (const e of ext) {
      if (e.offset !== pos || e.length <= 0) break;
      const n = Math.min(e.length, end - pos);
      const flags = (e.hole ? C.STATE_HOLE : 0) | (e.zero ? C.STATE_ZERO : 0);
      const k = desc.length;
      if (k && desc[k - 1] === flags) desc[k - 2] = desc[k - 2]! + n;
      else desc.push(n, flags);
      pos += n;
      if (pos >= end || desc.length / 2 >= MAX_EXTENTS) break;
    }
    if (desc.length === 0) throw err.io('the device returned no block status');
    const count = r.flags & C.CMD_FLAG_REQ_ONE ? 1 : desc.length / 2;
    const b = Buffer.allocUnsafe(C.STRUCTURED_REPLY_SIZE + 4 + 8 * count);
    ReplyWriter.chunkHeader(b, 0, r, C.REPLY_FLAG_DONE, C.REPLY_TYPE_BLOCK_STATUS, 4 + 8 * count);
    b.writeUInt32BE(C.BASE_ALLOCATION_ID, 20);
    for (let i = 0; i < count; i++) {
      b.writeUInt32BE(desc[2 * i]!, 24 + 8 * i);
      b.writeUInt32BE(desc[2 * i + 1]!, 28 + 8 * i);
    }
    this.writer.write(b);
  }
}

