/**
 * Metadata cache for cluster-sized tables (L2 tables, refcount blocks):
 * write-back, LRU, bounded in bytes. One instance per table kind per image.
 *
 * Ordering: `beforeWrite` runs before any dirty table of this cache reaches
 * the file. The L2 cache sets it to "refcount blocks written and synced", so
 * an L2 entry never reaches the disk before the refcount of the cluster it
 * points at (QEMU's cache dependency, qcow2-cache.c).
 */
import type { ImageFile } from './io.js';

interface Slot {
  buf: Buffer;
  dirty: boolean;
}

export class TableCache {
  private slots = new Map<number, Slot>();
  private readonly maxSlots: number;
  beforeWrite: (() => Promise<void>) | null = null;

  constructor(
    private file: ImageFile,
    private tableSize: number,
    maxBytes: number,
    private what: string,
  ) {
    // At least a handful of slots so one operation never evicts what it is working on.
    this.maxSlots = Math.max(8, Math.floor(maxBytes / tableSize));
  }

  get dirtyCount(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.dirty) n++;
    return n;
  }

  /** The cached table, or undefined (no I/O). Refreshes LRU position. */
  peek(offset: number): Buffer | undefined {
    const s = this.slots.get(offset);
    if (!s) return undefined;
    this.slots.delete(offset);
    this.slots.set(offset, s);
    return s.buf;
  }

  async get(offset: number): Promise<Buffer> {
    const hit = this.peek(offset);
    if (hit) return hit;
    const buf = await this.file.readExact(offset, this.tableSize, this.what);
    await this.insert(offset, { buf, dirty: false });
    return buf;
  }

  /** A new table that will live at `offset`, zeroed (or a copy of `from`), dirty, not read from disk. */
  async create(offset: number, from?: Buffer): Promise<Buffer> {
    const buf = Buffer.alloc(this.tableSize);
    if (from) from.copy(buf);
    this.slots.delete(offset);
    await this.insert(offset, { buf, dirty: true });
    return buf;
  }

  /**
   * Mark a table modified. `buf` is the buffer the caller changed: if it was
   * evicted meanwhile it goes back in (briefly over the bound) rather than
   * losing the change.
   */
  markDirty(offset: number, buf: Buffer): void {
    const s = this.slots.get(offset);
    if (s && s.buf === buf) s.dirty = true;
    else this.slots.set(offset, { buf, dirty: true });
  }

  /** Forget a table whose cluster was freed (its contents no longer matter). */
  discard(offset: number): void {
    this.slots.delete(offset);
  }

  private async insert(offset: number, slot: Slot): Promise<void> {
    while (this.slots.size >= this.maxSlots) {
      const [victim, vs] = this.slots.entries().next().value as [number, Slot];
      if (vs.dirty) {
        if (this.beforeWrite) await this.beforeWrite();
        await this.file.write(victim, vs.buf);
      }
      this.slots.delete(victim);
    }
    this.slots.set(offset, slot);
  }

  /** Write every dirty table (after `beforeWrite`); the caller syncs. Returns whether anything was written. */
  async writeDirty(): Promise<boolean> {
    const dirty = [...this.slots.entries()].filter(([, s]) => s.dirty).sort((a, b) => a[0] - b[0]);
    if (dirty.length === 0) return false;
    if (this.beforeWrite) await this.beforeWrite();
    for (const [off, s] of dirty) {
      await this.file.write(off, s.buf);
      s.dirty = false;
    }
    return true;
  }

  clear(): void {
    this.slots.clear();
  }
}
