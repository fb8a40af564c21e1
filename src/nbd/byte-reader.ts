/**
 * ByteReader: "give me exactly n bytes" over a stream, for the handshake
 * phase (small, strictly request/response messages). The transmission
 * phase does not use it: it parses socket chunks in place for speed.
 *
 * Memory is bounded by the caller: read(n) is only called with n up to the
 * option-size cap, and skip(n) discards without buffering.
 */
import type { Duplex } from 'node:stream';

export class ConnectionClosed extends Error {
  constructor(message = 'connection closed by peer') {
    super(message);
    this.name = 'ConnectionClosed';
  }
}

interface Waiter {
  n: number;
  skip: boolean;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export class ByteReader {
  private chunks: Buffer[] = [];
  private avail = 0;
  private waiter: Waiter | null = null;
  private failure: Error | null = null;
  private stream: Duplex | null = null;

  private readonly onData = (chunk: Buffer) => {
    this.chunks.push(chunk);
    this.avail += chunk.length;
    this.pump();
  };
  private readonly onEnd = () => this.fail(new ConnectionClosed());
  private readonly onError = (e: Error) => this.fail(e);

  /** With `manual`, the caller feeds bytes through push()/end() (onread sockets) instead of 'data' events. */
  constructor(stream: Duplex, manual = false) {
    this.attach(stream, !manual);
  }

  /** Feed bytes the reader owns (callers copy transient buffers first). */
  push(chunk: Buffer): void {
    this.onData(chunk);
  }

  end(e: Error = new ConnectionClosed()): void {
    this.fail(e);
  }

  attach(stream: Duplex, data = true): void {
    this.stream = stream;
    this.failure = null;
    if (data) stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
    stream.resume();
  }

  /** Stop reading the stream and hand back whatever was buffered but not consumed. */
  detach(): Buffer {
    const s = this.stream;
    if (s) {
      s.off('data', this.onData);
      s.off('end', this.onEnd);
      s.off('close', this.onEnd);
      s.off('error', this.onError);
      s.pause();
    }
    this.stream = null;
    const rest = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    this.avail = 0;
    return rest;
  }

  read(n: number): Promise<Buffer> {
    return this.wait(n, false);
  }

  /** Discard n bytes as they arrive (oversized options), holding at most one chunk. */
  async skip(n: number): Promise<void> {
    await this.wait(n, true);
  }

  private wait(n: number, skip: boolean): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('ByteReader: concurrent reads'));
    return new Promise<Buffer>((resolve, reject) => {
      this.waiter = { n, skip, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (w.skip) {
      while (w.n > 0 && this.chunks.length) {
        const c = this.chunks[0]!;
        if (c.length <= w.n) {
          w.n -= c.length;
          this.avail -= c.length;
          this.chunks.shift();
        } else {
          this.chunks[0] = c.subarray(w.n);
          this.avail -= w.n;
          w.n = 0;
        }
      }
      if (w.n === 0) {
        this.waiter = null;
        w.resolve(Buffer.alloc(0));
      } else if (this.failure) {
        this.waiter = null;
        w.reject(this.failure);
      }
      return;
    }
    if (this.avail >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    } else if (this.failure) {
      this.waiter = null;
      w.reject(this.failure);
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.avail -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.avail -= n;
    return out;
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    this.pump();
  }
}
