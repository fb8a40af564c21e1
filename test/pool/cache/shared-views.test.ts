/**
 * Cached views of larger buffers: survivors of mostly evicted buffers are
 * copied out once the uncovered bytes pass a budget, so what views pin
 * stays within what the ARC charges plus the budget; views evicted
 * together (a stream) never copy.
 */
import { describe, expect, it } from 'vitest';
import { Arc } from '../../../src/pool/cache/arc.js';
import { SharedViews } from '../../../src/pool/cache/shared-views.js';

const K = 16 * 1024;
/** Waste allowed before copying (the pool uses 1/16 of its ARC). */
const BUDGET = 8 * K;

function payload(seed: number, blocks: number): Buffer {
  const b = Buffer.allocUnsafeSlow(blocks * K);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return b;
}

function cacheViews(arc: Arc<Buffer>, views: SharedViews, buf: Buffer, prefix: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i * K < buf.length; i++) {
    const key = `${prefix}${i}`;
    const v = buf.subarray(i * K, (i + 1) * K);
    arc.set(key, v, v.length);
    views.added(key, v);
    keys.push(key);
  }
  return keys;
}

describe('SharedViews', () => {
  it('views cached and evicted together: nothing is copied, nothing stays pinned', () => {
    const arc = new Arc<Buffer>({ maxBytes: 64 * K });
    const views = new SharedViews(arc, BUDGET);
    // Payloads of 4 blocks (smaller than the budget, as 1 MiB writes are beside the pool's budget).
    for (let p = 0; p < 16; p++) cacheViews(arc, views, payload(p, 4), `p${p}-`);
    expect(views.stats()).toEqual({ buffers: 16, viewBytes: 64 * K, pinnedBytes: 64 * K });
    for (let p = 16; p < 100; p++) cacheViews(arc, views, payload(p, 4), `p${p}-`); // each evicts the oldest, in order
    expect(views.compactions).toBe(0);
    expect(views.stats()).toEqual({ buffers: 16, viewBytes: 64 * K, pinnedBytes: 64 * K });
  });

  it('survivors of mostly evicted buffers get their own memory, same contents, same place; pinned memory stays bounded', () => {
    const arc = new Arc<Buffer>({ maxBytes: 64 * K });
    const views = new SharedViews(arc, BUDGET);
    const bufs = [1, 2, 3, 4].map((seed) => payload(seed, 16));
    const keys = bufs.map((b, i) => cacheViews(arc, views, b, `p${i}-`));
    // One block of each payload is read again: the ARC keeps it longer than its siblings.
    for (const k of keys) expect(arc.get(k[3]!)).toBeDefined();
    for (let i = 0; i < 60; i++) {
      arc.set(`x${i}`, Buffer.alloc(K, i), K);
      const st = views.stats();
      expect(st.pinnedBytes, `after ${i + 1} evictions`).toBeLessThanOrEqual(st.viewBytes + BUDGET + 16 * K);
    }
    bufs.forEach((b, i) => {
      const v = arc.peek(keys[i]![3]!)!;
      expect(v.buffer).not.toBe(b.buffer);
      expect(v.equals(b.subarray(3 * K, 4 * K))).toBe(true);
    });
    expect(views.compactions).toBeGreaterThan(0);
    expect(views.compactions).toBeLessThan(64);
    expect(views.stats().buffers).toBe(0);
    arc.check();
  });

  it('delete, replace and clear release what they drop', () => {
    const arc = new Arc<Buffer>({ maxBytes: 1024 * K });
    const views = new SharedViews(arc, BUDGET);
    const keys = cacheViews(arc, views, payload(4, 8), 'a');
    arc.delete(keys[0]!);
    const fresh = Buffer.alloc(K, 9);
    arc.set(keys[1]!, fresh, K); // replaced by a buffer of its own
    expect(views.stats().viewBytes).toBe(6 * K);
    arc.clear();
    expect(views.stats()).toEqual({ buffers: 0, viewBytes: 0, pinnedBytes: 0 });
  });

  it('hasRoom: the buffers with cached views hold less than the budget, through caching, eviction, compaction, delete and clear', () => {
    const arc = new Arc<Buffer>({ maxBytes: 48 * K });
    const views = new SharedViews(arc, BUDGET);
    const agrees = (when: string) => expect(views.hasRoom(), when).toBe(views.stats().pinnedBytes < BUDGET);
    expect(views.hasRoom()).toBe(true);
    const first = cacheViews(arc, views, payload(1, 4), 'a'); // 4 blocks pinned: room left
    agrees('one payload');
    expect(views.hasRoom()).toBe(true);
    cacheViews(arc, views, payload(2, 4), 'b'); // 8 blocks = the budget: no room
    agrees('two payloads');
    expect(views.hasRoom()).toBe(false);
    for (const k of first) arc.delete(k); // a payload freed (overwritten blocks): room again
    agrees('one deleted');
    expect(views.hasRoom()).toBe(true);
    // Mixed traffic: payloads, re-reads that keep survivors, plain blocks that evict.
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const all: string[] = [];
    for (let i = 0; i < 400; i++) {
      const op = rnd(4);
      if (op === 0) all.push(...cacheViews(arc, views, payload(i, 1 + rnd(6)), `p${i}-`));
      else if (op === 1 && all.length) arc.get(all[rnd(all.length)]!);
      else if (op === 2 && all.length) arc.delete(all[rnd(all.length)]!);
      else arc.set(`x${i}`, Buffer.alloc(K, i), K);
      agrees(`step ${i}`);
    }
    // Compaction: one re-read block per payload survives while its siblings are evicted.
    arc.clear();
    const keys = [1, 2, 3].map((n) => cacheViews(arc, views, payload(100 + n, 16), `c${n}-`));
    for (const k of keys) arc.get(k[3]!);
    for (let i = 0; i < 60; i++) {
      arc.set(`y${i}`, Buffer.alloc(K, i), K);
      agrees(`eviction ${i}`);
    }
    expect(views.compactions).toBeGreaterThan(0);
    arc.clear();
    agrees('cleared');
    expect(views.hasRoom()).toBe(true);
  });
});
