/**
 * A gate that I/O passes through and structural changes close: close()
 * waits for every I/O inside to leave and holds new ones until reopened.
 * Snapshots of cow and row volumes need it: the copy-out target or the top
 * layer changes between two writes, never during one.
 *
 * Only public entry points enter (a write that re-enters through its own
 * helpers would deadlock against a pending close).
 */
export class Gate {
  private inside = 0;
  private closed: Promise<void> | null = null;
  private reopen: (() => void) | null = null;
  private drained: (() => void) | null = null;

  async enter(): Promise<void> {
    while (this.closed) await this.closed;
    this.inside++;
  }

  leave(): void {
    this.inside--;
    if (this.inside === 0 && this.drained) this.drained();
  }

  /** Close (waiting for I/O inside to finish); returns the function that reopens. Closes queue behind each other. */
  async close(): Promise<() => void> {
    while (this.closed) await this.closed;
    this.closed = new Promise<void>((r) => (this.reopen = r));
    if (this.inside > 0) await new Promise<void>((r) => (this.drained = r));
    this.drained = null;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const r = this.reopen!;
      this.closed = null;
      this.reopen = null;
      r();
    };
  }

  /** Run `fn` with the gate closed. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const open = await this.close();
    try {
      return await fn();
    } finally {
      open();
    }
  }
}
