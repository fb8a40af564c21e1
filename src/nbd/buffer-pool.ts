/**
 * BufferPool: reusable buffers for read replies and write payloads, in
 * power-of-two size classes, one pool per server (no module state).
 *
 * Ownership rule: a buffer from get() belongs to exactly one request until
 * put() — for reads, until the socket has written the reply; for writes,
 * until the device's write() has resolved (devices must not keep the
 * caller's buffer after that; MemoryDevice and RawDevice copy or finish),
 * or for payloads handed over (WriteOptions.owned), until the device calls
 * WriteOptions.release (a pool volume: once their txg has synced).
 * The pool holds at most `maxPooledBytes`; extra buffers are left to the GC.
 */
export class BufferPool {
  private free = new Map<number, Buffer[]>();
  private pooled = 0;

  constructor(private readonly maxPooledBytes = 64 * 1024 * 1024) {}

  static classOf(n: number): number {
    let c = 4096;
    while (c < n) c *= 2;
    return c;
  }

  /** A buffer of at least n bytes (its length is the size class). */
  get(n: number): Buffer {
    const c = BufferPool.classOf(n);
    const list = this.free.get(c);
    const b = list?.pop();
    if (b) {
      this.pooled -= c;
      return b;
    }
    return Buffer.allocUnsafeSlow(c);
  }

  put(b: Buffer): void {
    const c = b.length;
    if (c !== BufferPool.classOf(c) || this.pooled + c > this.maxPooledBytes) return;
    let list = this.free.get(c);
    if (!list) this.free.set(c, (list = []));
    list.push(b);
    this.pooled += c;
  }
}
