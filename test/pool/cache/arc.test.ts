import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { StorageError } from '../../../src/errors.js';
import { Arc } from '../../../src/pool/cache/arc.js';

/** A plain LRU of the same byte capacity, to show what ARC does better. */
class Lru<V> {
  private readonly m = new Map<string, { v: V; b: number }>();
  private size = 0;
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    const e = this.m.get(k);
    if (!e) return undefined;
    this.m.delete(k);
    this.m.set(k, e);
    return e.v;
  }
  set(k: string, v: V, b: number): void {
    const old = this.m.get(k);
    if (old) { this.m.delete(k); this.size -= old.b; }
    while (this.size + b > this.max && this.m.size > 0) {
      const [lk, le] = this.m.entries().next().value as [string, { v: V; b: number }];
      this.m.delete(lk);
      this.size -= le.b;
    }
    this.m.set(k, { v, b });
    this.size += b;
  }
}

describe('Arc basics', () => {
  it('misses, then hits from MRU, then from MFU', () => {
    const arc = new Arc<string>({ maxBytes: 1000 });
    expect(arc.get('a')).toBeUndefined();
    arc.set('a', 'A', 100);
    expect(arc.lists().mru).toEqual(['a']);
    expect(arc.get('a')).toBe('A'); // MRU hit, promoted
    expect(arc.lists().mfu).toEqual(['a']);
    expect(arc.get('a')).toBe('A'); // MFU hit
    const s = arc.stats();
    expect(s).toMatchObject({ hits: 2, misses: 1, mruHits: 1, mfuHits: 1, size: 100, entries: 1, maxBytes: 1000 });
  });

  it('set on a resident key replaces the value in place, without promotion', () => {
    const arc = new Arc<string>({ maxBytes: 1000 });
    arc.set('a', 'A1', 100);
    arc.set('a', 'A2', 300);
    expect(arc.lists().mru).toEqual(['a']);
    expect(arc.stats().size).toBe(300);
    expect(arc.get('a')).toBe('A2');
    arc.set('a', 'A3', 50); // now in MFU, stays there
    expect(arc.lists().mfu).toEqual(['a']);
    expect(arc.stats().size).toBe(50);
    arc.check();
  });

  it('evicts to ghosts and never exceeds maxBytes', () => {
    const arc = new Arc<number>({ maxBytes: 1000 });
    for (let i = 0; i < 20; i++) arc.set(`k${i}`, i, 100);
    const s = arc.stats();
    expect(s.size).toBe(1000);
    expect(s.evictions).toBe(10);
    expect(arc.lists().mru).toEqual(Array.from({ length: 10 }, (_, i) => `k${i + 10}`));
    // t1 + b1 <= c: T1 is full, so its ghosts were forgotten
    expect(s.mruGhostBytes).toBe(0);
    arc.check();
  });

  it('ghost hits adapt the target p: a B1 hit grows it, a B2 hit shrinks it', () => {
    const arc = new Arc<number>({ maxBytes: 1000 });
    // Working set in MFU: 5 x 100.
    for (let i = 0; i < 5; i++) { arc.set(`f${i}`, i, 100); arc.get(`f${i}`); }
    // Fill T1 and push some of it to B1.
    for (let i = 0; i < 8; i++) arc.set(`r${i}`, i, 100);
    expect(arc.stats().mruGhostBytes).toBeGreaterThan(0);
    const ghost = arc.lists().mruGhost[0]!;
    const p0 = arc.stats().target;
    expect(arc.get(ghost)).toBeUndefined();
    const s1 = arc.stats();
    expect(s1.ghostMruHits).toBe(1);
    expect(s1.target).toBeGreaterThan(p0);
    // A second get before set must not adapt again.
    arc.get(ghost);
    expect(arc.stats().target).toBe(s1.target);
    // The re-read enters MFU.
    arc.set(ghost, -1, 100);
    expect(arc.lists().mfu).toContain(ghost);
    expect(arc.stats().target).toBe(s1.target);
    arc.check();

    // Now make T2 lose entries to B2 and hit one of them.
    for (let i = 0; i < 30; i++) { arc.set(`m${i}`, i, 100); arc.get(`m${i}`); }
    const g2 = arc.lists().mfuGhost[0];
    expect(g2).toBeDefined();
    const p1 = arc.stats().target;
    expect(p1).toBeGreaterThan(0);
    expect(arc.get(g2!)).toBeUndefined();
    expect(arc.stats().ghostMfuHits).toBe(1);
    expect(arc.stats().target).toBeLessThan(p1);
    arc.check();
  });

  it('delete forgets resident and ghost keys; clear empties but keeps counters', () => {
    const arc = new Arc<number>({ maxBytes: 300 });
    for (let i = 0; i < 3; i++) { arc.set(`w${i}`, i, 100); arc.get(`w${i}`); }
    arc.set('x', 1, 100); // evicts w0 to B2
    expect(arc.lists().mfuGhost).toEqual(['w0']);
    expect(arc.delete('w0')).toBe(true);
    expect(arc.delete('x')).toBe(true);
    expect(arc.delete('nope')).toBe(false);
    expect(arc.get('x')).toBeUndefined();
    expect(arc.stats().ghostMfuHits).toBe(0);
    const before = arc.stats();
    arc.clear();
    const after = arc.stats();
    expect(after).toMatchObject({ size: 0, entries: 0, ghostEntries: 0, target: 0, hits: before.hits, misses: before.misses });
    arc.check();
  });

  it('entries larger than the cache are not cached and drop an older value', () => {
    const arc = new Arc<string>({ maxBytes: 100 });
    arc.set('a', 'small', 10);
    arc.set('a', 'huge', 101);
    expect(arc.get('a')).toBeUndefined();
    expect(arc.stats().size).toBe(0);
    const none = new Arc<string>({ maxBytes: 0 });
    none.set('a', 'x', 1);
    expect(none.get('a')).toBeUndefined();
  });

  it('resize shrinks by evicting and can grow again', () => {
    const arc = new Arc<number>({ maxBytes: 1000 });
    for (let i = 0; i < 10; i++) arc.set(`k${i}`, i, 100);
    arc.resize(450);
    expect(arc.stats().size).toBeLessThanOrEqual(450);
    expect(arc.stats().maxBytes).toBe(450);
    arc.check();
    const kept = arc.stats().entries;
    const evicted = arc.stats().evictions;
    arc.resize(2000);
    for (let i = 0; i < 20 - kept; i++) arc.set(`n${i}`, i, 100);
    expect(arc.stats().size).toBe(2000);
    expect(arc.stats().evictions).toBe(evicted);
    arc.check();
  });

  it('rejects bad sizes with EINVAL', () => {
    expect(() => new Arc({ maxBytes: -1 })).toThrow(StorageError);
    expect(() => new Arc({ maxBytes: NaN })).toThrow(StorageError);
    const arc = new Arc<number>({ maxBytes: 100 });
    for (const b of [0, -5, 1.5, NaN, Infinity]) {
      try { arc.set('a', 1, b); expect.unreachable(); } catch (e) { expect((e as StorageError).code).toBe('EINVAL'); }
    }
    expect(() => arc.resize(-1)).toThrow(StorageError);
  });
});

describe('Arc take (spare values handed over)', () => {
  it('takes only values marked spare for a settled epoch that no get() has handed out, and forgets them', () => {
    const arc = new Arc<object>({ maxBytes: 1000 });
    const a = {}, b = {}, c = {}, d = {};
    arc.set('a', a, 10);
    arc.set('b', b, 10);
    arc.set('c', c, 10);
    arc.set('d', d, 10);
    expect(arc.take('a')).toBeUndefined(); // not marked
    arc.markSpare('a', a, 5);
    arc.markSpare('b', {}, 5); // not the cached value: ignored
    expect(arc.take('a')).toBeUndefined(); // epoch 5 not settled
    arc.settle(4);
    expect(arc.take('a')).toBeUndefined();
    arc.settle(5);
    expect(arc.take('b')).toBeUndefined();
    expect(arc.take('a')).toBe(a);
    expect(arc.has('a')).toBe(false);
    expect(arc.take('a')).toBeUndefined();
    // Handed out before the mark, or after it: never spare.
    expect(arc.get('c')).toBe(c);
    arc.markSpare('c', c, 1);
    expect(arc.take('c')).toBeUndefined();
    arc.markSpare('b', b, 1);
    expect(arc.get('b')).toBe(b);
    expect(arc.take('b')).toBeUndefined();
    // A mark taken back; settle never goes back.
    arc.markSpare('d', d, 2);
    arc.markSpare('d', d, Infinity);
    arc.settle(3);
    expect(arc.take('d')).toBeUndefined();
    arc.markSpare('d', d, 5);
    expect(arc.take('d')).toBe(d);
    // A new value under a key starts unmarked and not handed out.
    const e = {};
    arc.set('c', e, 10);
    expect(arc.take('c')).toBeUndefined();
    arc.markSpare('c', e, 5);
    expect(arc.take('c')).toBe(e);
    expect(arc.stats().size).toBe(10); // b
  });
});

describe('Arc tags', () => {
  it('get, take and delete see an entry only with its tag; set with another tag replaces it as new', () => {
    const arc = new Arc<object>({ maxBytes: 1000 });
    const old = {}, now = {};
    arc.set(7, old, 10, 5);
    expect(arc.get(7)).toBeUndefined(); // tag 0
    expect(arc.get(7, 9)).toBeUndefined();
    expect(arc.get(7, 5)).toBe(old); // -> MFU
    expect(arc.lists().mfu).toEqual([7]);
    arc.set(7, now, 10, 9); // another block in the same place: new, in MRU
    expect(arc.lists()).toMatchObject({ mru: [7], mfu: [] });
    expect(arc.get(7, 5)).toBeUndefined();
    expect(arc.delete(7, 5)).toBe(false);
    expect(arc.peek(7)).toBe(now);
    arc.markSpare(7, now, 1);
    arc.settle(1);
    expect(arc.take(7, 5)).toBeUndefined();
    expect(arc.take(7, 9)).toBe(now);
    arc.set(8, old, 10, 3);
    expect(arc.delete(8, 3)).toBe(true);
    expect(arc.stats().entries).toBe(0);
    arc.check();
  });
});

describe('Arc scan resistance', () => {
  it('a one-time scan does not evict a twice-used working set (LRU loses it)', () => {
    const BLOCK = 16384;
    const arc = new Arc<number>({ maxBytes: 100 * BLOCK });
    const lru = new Lru<number>(100 * BLOCK);
    const working = Array.from({ length: 60 }, (_, i) => `hot${i}`);
    for (const c of [arc, lru]) {
      for (const [i, k] of working.entries()) c.set(k, i, BLOCK);
      for (const k of working) c.get(k); // second reference
    }
    // A sequential scan five times the cache, each block read once.
    for (let i = 0; i < 500; i++) {
      for (const c of [arc, lru]) if (c.get(`scan${i}`) === undefined) c.set(`scan${i}`, i, BLOCK);
    }
    const arcHits = working.filter((k) => arc.get(k) !== undefined).length;
    const lruHits = working.filter((k) => lru.get(k) !== undefined).length;
    expect(arcHits).toBe(working.length);
    expect(lruHits).toBe(0);
    expect(arc.stats().size).toBeLessThanOrEqual(100 * BLOCK);
    arc.check();
  });

  it('adapts to a recency workload: a loop larger than T1 earns it the room of an idle MFU set', () => {
    // 50 entries used twice long ago sit in T2; then an 80-key loop runs.
    // At first T1 (p = 0) holds only 50 and the loop misses every time; the
    // B1 ghost hits grow p until the whole loop fits and every get hits.
    const arc = new Arc<number>({ maxBytes: 100 });
    for (let i = 0; i < 50; i++) { arc.set(`old${i}`, i, 1); arc.get(`old${i}`); }
    const loop = (): number => {
      let hits = 0;
      for (let i = 0; i < 80; i++) {
        const k = `loop${i}`;
        if (arc.get(k) === undefined) arc.set(k, i, 1);
        else hits++;
      }
      return hits;
    };
    expect(loop()).toBe(0);
    expect(arc.stats().target).toBe(0);
    const second = loop(); // ghost hits start moving p
    expect(arc.stats().ghostMruHits).toBeGreaterThan(0);
    expect(second).toBeLessThan(80);
    for (let round = 0; round < 10; round++) loop();
    expect(loop()).toBe(80);
    // The idle MFU set gave up its room.
    const l = arc.lists();
    expect([...l.mru, ...l.mfu].filter((k) => String(k).startsWith('old')).length).toBeLessThanOrEqual(20);
    expect(arc.stats().target).toBeGreaterThan(0);
    arc.check();
  });
});

describe('Arc against a model (property)', () => {
  type Op =
    | { op: 'get'; key: number }
    | { op: 'set'; key: number; bytes: number }
    | { op: 'delete'; key: number }
    | { op: 'resize'; max: number }
    | { op: 'clear' };

  const key = fc.integer({ min: 0, max: 40 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 10, arbitrary: key.map((k) => ({ op: 'get' as const, key: k })) },
    { weight: 10, arbitrary: fc.record({ op: fc.constant('set' as const), key, bytes: fc.integer({ min: 1, max: 300 }) }) },
    { weight: 2, arbitrary: key.map((k) => ({ op: 'delete' as const, key: k })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 2000 }).map((m) => ({ op: 'resize' as const, max: m })) },
    { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
  );

  it('keeps every invariant and returns only the last value set', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2000 }), fc.array(op, { maxLength: 300 }), (max0, ops) => {
        const arc = new Arc<string>({ maxBytes: max0 });
        const model = new Map<string, string>(); // last value set, until delete/clear
        let max = max0;
        let version = 0;
        let hits = 0, misses = 0;
        for (const o of ops) {
          switch (o.op) {
            case 'get': {
              const k = `k${o.key}`;
              const v = arc.get(k);
              if (v === undefined) misses++;
              else { hits++; expect(v).toBe(model.get(k)); }
              break;
            }
            case 'set': {
              const k = `k${o.key}`;
              const v = `${k}#${version++}`;
              arc.set(k, v, o.bytes);
              model.set(k, v);
              // What was just set is resident unless it can never fit.
              if (o.bytes <= max) expect(arc.has(k)).toBe(true);
              else expect(arc.has(k)).toBe(false);
              break;
            }
            case 'delete':
              arc.delete(`k${o.key}`);
              model.delete(`k${o.key}`);
              expect(arc.has(`k${o.key}`)).toBe(false);
              break;
            case 'resize':
              arc.resize(o.max);
              max = o.max;
              break;
            case 'clear':
              arc.clear();
              model.clear();
              break;
          }
          arc.check();
          const s = arc.stats();
          expect(s.size).toBeLessThanOrEqual(max);
          expect(s.size).toBe(s.mruBytes + s.mfuBytes);
          expect(s.target).toBeGreaterThanOrEqual(0);
          expect(s.target).toBeLessThanOrEqual(max);
          expect(s.entries + s.ghostEntries).toBeLessThanOrEqual(2 * max);
          expect(s.hits).toBe(hits);
          expect(s.misses).toBe(misses);
          expect(s.hits).toBe(s.mruHits + s.mfuHits);
          expect(s.ghostMruHits + s.ghostMfuHits).toBeLessThanOrEqual(s.misses);
          const l = arc.lists();
          // Ghost keys are not resident: get() on them misses.
          for (const g of [...l.mruGhost, ...l.mfuGhost]) expect(arc.has(g)).toBe(false);
          // Every resident key holds the model's value.
          for (const k of [...l.mru, ...l.mfu]) expect(model.has(k as string)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
