/**
 * ReadGate: how far one connection's large reads may run ahead of its
 * socket. A read takes its length from the gate before it touches the
 * device and gives it back once its reply has been written (or failed);
 * while the bytes taken would pass the limit, later reads wait in arrival
 * order.
 *
 * Why: a reply buffer read long before the socket sends it has left the
 * CPU caches by then, and both copies (device -> buffer, buffer -> socket)
 * pay for the misses. With all 16 of fio's 1 MiB reads let through at
 * once, 16 MiB of replies queued behind the socket; serving a raw file on
 * tmpfs ran 2.3-2.6 GB/s, and 2.7-3.1 GB/s with 4 MiB ahead (alternated,
 * bench/README.md session 13). Nothing is lost in parallelism: Node's
 * thread pool runs four device reads at a time, which 4 MiB of 1 MiB
 * reads still fills.
 *
 * Per connection, not per server: a client that stops reading its
 * replies holds only its own gate, never another client's reads.
 */
export class ReadGate {
  private taken = 0;
  private readonly waiting: { n: number; go: () => void }[] = [];

  constructor(readonly limit: number) {}

  /** Bytes taken and not yet given back. */
  get bytes(): number {
    return this.taken;
  }

  /**
   * Take n bytes now if they fit and nobody waits before us. A read larger
   * than the whole limit still goes through once nothing else is taken.
   */
  tryTake(n: number): boolean {
    if (this.waiting.length || !this.fits(n)) return false;
    this.taken += n;
    return true;
  }

  /** Resolves once n bytes are taken (in arrival order). */
  take(n: number): Promise<void> {
    if (this.tryTake(n)) return Promise.resolve();
    return new Promise((go) => this.waiting.push({ n, go }));
  }

  give(n: number): void {
    this.taken -= n;
    const w = this.waiting;
    while (w.length && this.fits(w[0]!.n)) {
      const next = w.shift()!;
      this.taken += next.n;
      next.go();
    }
  }

  private fits(n: number): boolean {
    return this.taken === 0 || this.taken + n <= this.limit;
  }
}
