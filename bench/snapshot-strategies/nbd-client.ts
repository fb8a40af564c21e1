/**
 * A minimal NBD client (fixed newstyle, NBD_OPT_GO, simple replies, writes
 * only) for the unmeasured setup writes of the depth phase: 50 layers of
 * small writes, one connection per target instead of 50 fio start-ups.
 * Every measured number still comes from fio.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';

const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const OPT_GO = 7;
const REP_ACK = 1;
const CMD_WRITE = 1;
const CMD_DISC = 2;

export class NbdWriter {
  private buf: Buffer = Buffer.alloc(0);
  private wakeup: (() => void) | null = null;
  private closed = false;
  private failure: Error | null = null;
  private pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private handles = 1;
  private transmission = false;

  private constructor(private sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      if (this.transmission) this.replies();
      else this.wake();
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('NBD connection closed')));
  }

  static async connect(uri: string): Promise<NbdWriter> {
    const m = /^nbd:\/\/([^:/]+):(\d+)\/(.*)$/.exec(uri);
    if (!m) throw new Error(`unsupported NBD URI ${uri}`);
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(Number(m[2]), m[1]!, () => resolve(s));
      s.once('error', reject);
    });
    sock.setNoDelay(true);
    const c = new NbdWriter(sock);
    await c.handshake(decodeURIComponent(m[3]!));
    return c;
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.wake();
  }

  private wake(): void {
    const w = this.wakeup;
    this.wakeup = null;
    w?.();
  }

  private async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw this.failure ?? new Error('NBD connection closed');
      await new Promise<void>((r) => (this.wakeup = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private async handshake(name: string): Promise<void> {
    const g = await this.read(18);
    if (g.toString('latin1', 0, 16) !== 'NBDMAGICIHAVEOPT') throw new Error('not an NBD newstyle server');
    const serverFlags = g.readUInt16BE(16);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(serverFlags & 3); // fixed newstyle, no zeroes: whatever the server offers
    const n = Buffer.from(name, 'utf8');
    const opt = Buffer.alloc(16 + 4 + n.length + 2);
    opt.write('IHAVEOPT', 0, 'latin1');
    opt.writeUInt32BE(OPT_GO, 8);
    opt.writeUInt32BE(4 + n.length + 2, 12);
    opt.writeUInt32BE(n.length, 16);
    n.copy(opt, 20);
    this.sock.write(Buffer.concat([flags, opt]));
    for (;;) {
      const h = await this.read(20);
      if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new Error('bad option reply');
      const type = h.readUInt32BE(12);
      const data = await this.read(h.readUInt32BE(16));
      if (type === REP_ACK) break;
      if (type & 0x80000000) throw new Error(`export '${name}' refused: ${data.toString('utf8') || type.toString(16)}`);
    }
    this.transmission = true;
    this.replies();
  }

  private replies(): void {
    while (this.buf.length >= 16) {
      if (this.buf.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) return this.fail(new Error('bad NBD reply magic'));
      const error = this.buf.readUInt32BE(4);
      const handle = this.buf.readUInt32BE(12);
      this.buf = this.buf.subarray(16);
      const p = this.pending.get(handle);
      this.pending.delete(handle);
      if (error) p?.reject(new Error(`NBD write failed: error ${error}`));
      else p?.resolve();
    }
  }

  private write(offset: number, data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(this.failure ?? new Error('NBD connection closed'));
    const handle = this.handles++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(CMD_WRITE, 6);
    h.writeUInt32BE(handle, 12);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(data.length, 24);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(handle, { resolve, reject });
      this.sock.write(Buffer.concat([h, data]));
    });
  }

  /** Write `len` bytes of random data at each offset, `qd` requests in flight. */
  async writeAt(offsets: number[], len: number, qd = 16): Promise<void> {
    const pool = randomBytes(len * 64);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(qd, offsets.length) }, async () => {
        while (next < offsets.length) {
          const i = next++;
          await this.write(offsets[i]!, pool.subarray((i % 64) * len, (i % 64) * len + len));
        }
      }),
    );
  }

  async close(): Promise<void> {
    if (!this.closed) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD_DISC, 6);
      this.sock.end(h);
      this.closed = true;
    }
    await new Promise<void>((r) => (this.sock.destroyed ? r() : this.sock.once('close', () => r())));
  }
}
