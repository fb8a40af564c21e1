/**
 * Per-block exclusive locks for read-modify-write. Acquire in ascending
 * block order (Volume does) so two multi-block writes cannot deadlock.
 */
export class BlockLocks {
  private tails = new Map<number, Promise<void>>();

  held(b: number): boolean {
    return this.tails.has(b);
  }

  /** Resolves with a release function once the block is ours. */
  async acquire(b: number): Promise<() => void> {
    const prev = this.tails.get(b);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev ? prev.then(() => mine) : mine;
    this.tails.set(b, tail);
    if (prev) await prev;
    return () => {
      release();
      if (this.tails.get(b) === tail) this.tails.delete(b);
    };
  }
}
