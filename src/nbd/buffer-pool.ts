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
 * That is as much as a pool volume's dirty limit (256 MiB): a txg's sync
 * gives back all its lent payloads at once, and with room for only 64 MiB
 * of them the rest became garbage while new writes allocated fresh ones
 * (seq write 0.9-1.0 GB/s against 1.1-1.2 with room for all, alternated).
 * An idle pool shrinks back: trimIfIdle() (the server calls it every few
 * seconds) drops all but `idleBytes` when nothing was taken since the call
 * before.
 */
export class BufferPool {
  private free = new Map<number, Buffer[]>();
  private pooled = 0;
  private drawn = false;

  constructor(
    private readonly maxPooledBytes = 256 * 1024 * 1024,
    private readonly idleBytes = 16 * 1024 * 1024,
  ) {}

  /** Bytes held for reuse. */
  get pooledBytes(): number {
    return this.pooled;
  }

  /** Nothing taken since the last call: keep at most `idleBytes` (largest classes go first). */
  trimIfIdle(): void {
    if (!this.drawn) {
      for (const c of [...this.free.keys()].sort((a, b) => b - a)) {
        const list = this.free.get(c)!;
        while (this.pooled > this.idleBytes && list.pop()) this.pooled -= c;
      }
    }
    this.drawn = false;
  }

  static classOf(n: number): number {
    let c = 4096;
    while (c < n) c *= 2;
    return c;
  }

  /** A buffer of at least n bytes (its length is the size class). */
  get(n: number): Buffer {
    this.drawn = true;
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
