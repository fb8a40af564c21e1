/**
 * A deliberately dumb NBD client over a raw socket, for sending exactly
 * the bytes a test wants (including garbage) and reading the replies.
 */
import net from 'node:net';

export class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  readonly done: Promise<void>;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.done = new Promise((resolve) =>
      sock.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
    sock.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  /** Exactly n bytes, or null if the server closed first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (this.closed) return null;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  write(b: Buffer): void {
    if (!this.closed) this.sock.write(b);
  }

  end(): void {
    this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }

  // ---- protocol helpers ----

  /** Read the 18-byte greeting and send client flags. */
  async greet(flags = 3): Promise<void> {
    const g = await this.read(18);
    if (!g || g.toString('latin1', 0, 16) !== 'NBDMAGICIHAVEOPT') throw new Error('bad greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(flags);
    this.write(f);
  }

  option(opt: number, data: Buffer = Buffer.alloc(0), magic = 'IHAVEOPT'): void {
    const h = Buffer.alloc(16);
    h.write(magic, 0, 'latin1');
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  /** One option reply: [option, type, data], or null on close. */
  async optionReply(): Promise<{ option: number; type: number; data: Buffer } | null> {
    const h = await this.read(20);
    if (!h) return null;
    const len = h.readUInt32BE(16);
    const data = len ? await this.read(len) : Buffer.alloc(0);
    if (!data) return null;
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** NBD_OPT_GO on `name` without structured replies; resolves when transmission starts. */
  async go(name: string): Promise<void> {
    const n = Buffer.from(name);
    const d = Buffer.alloc(4 + n.length + 2);
    d.writeUInt32BE(n.length, 0);
    n.copy(d, 4);
    this.option(7, d);
    for (;;) {
      const r = await this.optionReply();
      if (!r) throw new Error('closed during GO');
      if (r.type === 1) return;
      if (r.type & 0x80000000) throw new Error(`GO failed: ${r.type.toString(16)} ${r.data}`);
    }
  }

  request(type: number, offset: number, length: number, handle: number, flags = 0, payload?: Buffer, magic = 0x25609513): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(magic, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(handle, 12);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  /** A simple reply: {handle, error}; read payloads separately. */
  async simpleReply(): Promise<{ handle: number; error: number } | null> {
    const h = await this.read(16);
    if (!h) return null;
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`bad reply magic ${h.readUInt32BE(0).toString(16)}`);
    return { handle: h.readUInt32BE(12), error: h.readUInt32BE(4) };
  }
}
