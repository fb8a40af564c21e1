/**
 * Cached views of larger buffers, kept honest.
 *
 * Some ARC values are views into a larger buffer: blocks sliced out of one
 * coalesced device read, and blocks a volume kept from a guest's write
 * payload (WriteOptions.owned: a 1 MiB NBD write is 64 views of one buffer),
 * which the pipeline caches after they are written only while hasRoom(). The ARC
 * charges each view its own length, but a buffer stays in memory while any
 * view of it is cached: after evictions, a few surviving views (say, blocks
 * read again, which the ARC keeps longer) could pin many times what the ARC
 * thinks it holds.
 *
 * This tracker bounds that. It keeps, per buffer with cached views, their
 * keys and bytes, and the total "waste": bytes of those buffers no cached
 * view covers. When the waste passes a budget, the survivors of the
 * buffers that are mostly evicted (past twice the budget, of any buffer)
 * are copied into buffers of their own (arc.replace: same contents, same
 * place in the cache) and the big buffers are let go. So memory pinned by
 * cached views is at most what the ARC charges for them plus twice the
 * budget (and a buffer being filled, between its first view and its last). A stream
 * evicts a payload's views together, in the order they were cached, so the
 * waste stays around one payload and nothing is ever copied.
 */
import type { Arc, ArcKey } from './arc.js';

interface Shared {
  keys: Set<ArcKey>;
  bytes: number;
}

export class SharedViews {
  private readonly byBuffer = new Map<ArrayBufferLike, Shared>();
  /** Bytes of tracked buffers that no cached view covers. */
  private waste = 0;
  /** Views copied out of their buffers (stats, tests). */
  compactions = 0;
  /** Bytes of the buffers that have cached views (what they keep in memory). */
  private pinned = 0;

  /**
   * budget: waste allowed before survivors are copied out (default: 1/16 of
   * the ARC, at least 64 MiB: twice the largest NBD write, so one stream
   * evicting a payload in order never reaches it).
   */
  constructor(
    private readonly arc: Arc<Buffer>,
    private readonly budget = Math.max(64 * 1024 * 1024, Math.floor(arc.stats().maxBytes / 16)),
  ) {
    arc.onDrop = (key, value) => this.dropped(key, value);
  }

  /** Call after arc.set(key, value): tracks value if it is a view of a larger buffer. */
  added(key: ArcKey, value: Buffer): void {
    if (value.byteLength === value.buffer.byteLength || this.arc.peek(key) !== value) return;
    let s = this.byBuffer.get(value.buffer);
    if (!s) {
      this.byBuffer.set(value.buffer, (s = { keys: new Set(), bytes: 0 }));
      this.waste += value.buffer.byteLength;
      this.pinned += value.buffer.byteLength;
    }
    if (s.keys.has(key)) return;
    s.keys.add(key);
    s.bytes += value.byteLength;
    this.waste -= value.byteLength;
  }

  /**
   * Whether views of more buffers may be cached: the buffers that have cached
   * views hold less than the budget. The pipeline asks before caching views
   * of a write payload (pipeline.ts); views from coalesced reads are cached
   * regardless (compaction keeps those honest).
   */
  hasRoom(): boolean {
    return this.pinned < this.budget;
  }

  /** Buffers with cached views, the bytes those views cover, and the bytes the buffers hold (tests). */
  stats(): { buffers: number; viewBytes: number; pinnedBytes: number } {
    let viewBytes = 0;
    let pinnedBytes = 0;
    for (const [buf, s] of this.byBuffer) {
      viewBytes += s.bytes;
      pinnedBytes += buf.byteLength;
    }
    return { buffers: this.byBuffer.size, viewBytes, pinnedBytes };
  }

  private dropped(key: ArcKey, value: Buffer): void {
    const s = this.byBuffer.get(value.buffer);
    if (!s || !s.keys.delete(key)) return;
    s.bytes -= value.byteLength;
    this.waste += value.byteLength;
    if (s.keys.size === 0) {
      this.byBuffer.delete(value.buffer);
      this.waste -= value.buffer.byteLength;
      this.pinned -= value.buffer.byteLength;
      return;
    }
    if (this.waste > this.budget) this.compact();
  }

  /**
   * Copy survivors out until the waste is down to half the budget: those of
   * mostly-evicted buffers first; of any buffer only past twice the budget.
   */
  private compact(): void {
    for (const mostlyEvictedOnly of [true, false]) {
      if (!mostlyEvictedOnly && this.waste <= 2 * this.budget) return;
      for (const [buf, s] of this.byBuffer) {
        if (this.waste <= this.budget / 2) return;
        if (mostlyEvictedOnly && s.bytes * 2 >= buf.byteLength) continue;
        this.byBuffer.delete(buf);
        this.waste -= buf.byteLength - s.bytes;
        this.pinned -= buf.byteLength;
        for (const k of s.keys) {
          const v = this.arc.peek(k);
          if (v && v.buffer === buf) {
            this.arc.replace(k, Buffer.from(v));
            this.compactions++;
          }
        }
      }
    }
  }
}
