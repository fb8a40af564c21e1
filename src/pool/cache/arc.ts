/**
 * Adaptive replacement cache (Megiddo & Modha, "ARC: A Self-Tuning, Low
 * Overhead Replacement Cache", FAST 2003), with entries of varying size
 * measured in bytes as OpenZFS's arc.c uses it.
 *
 * Four lists, each in LRU order (head = least recently used):
 *
 *   T1  MRU        resident, referenced once since it entered the cache
 *   T2  MFU        resident, referenced at least twice
 *   B1  MRU ghost  keys (and sizes, no values) recently evicted from T1
 *   B2  MFU ghost  keys recently evicted from T2
 *
 * c is the byte capacity (maxBytes) and p the adaptive target for T1. A hit
 * in B1 means T1 was too small, so p grows; a hit in B2 means T2 was too
 * small, so p shrinks. Eviction takes T1's LRU when T1 is over its target,
 * else T2's. A one-time scan therefore only ever churns T1 (and B1), and a
 * working set that was referenced twice survives it in T2: the property LRU
 * lacks.
 *
 * Invariants (checked by check()):
 *   t1 + t2 <= c            resident bytes never exceed the capacity
 *   t1 + b1 <= c            (the L1 bound of the paper)
 *   t1 + t2 + b1 + b2 <= 2c (the whole directory)
 *   0 <= p <= c
 *   a key is in at most one list; ghosts hold no values
 * Every entry is at least 1 byte, so at most 2c keys are tracked.
 *
 * Every operation is O(1): one Map lookup (key -> node) and intrusive
 * doubly-linked lists. Not Map insertion order as the LRU: V8 leaves deleted
 * entries as holes until it rehashes, and keys().next() walks over them, so
 * "delete the oldest, insert a new one" costs O(holes) -- measured at
 * 50 us per eviction with 100k entries.
 *
 * Tags: set() may give an entry a number, its tag, that get(), take() and
 * delete() must give too to see it (a mismatch is a miss, and set() with
 * another tag replaces the entry as a new one). The pool keys a block by
 * where it lives and tags it with its birth txg: one Map entry per place,
 * and a block that reuses a freed place never sees the old one's data.
 *
 * The cache stores references: callers must not mutate a value after set()
 * or after get() returns it. `onDrop` hears of every resident value the
 * cache lets go (evicted, deleted, replaced, cleared): the pool uses it to
 * bound memory pinned by cached views of larger buffers (shared-views.ts).
 *
 * Differences from the paper (the first and third as arc.c does too):
 *  - get() is a lookup only; a miss is followed by set() from the caller
 *    once the data is read. A ghost hit adapts p in get() (the request is
 *    the signal) and is remembered on the ghost, so the following set()
 *    puts the key in T2 without adapting twice.
 *  - set() on a resident key replaces its value and refreshes its place in
 *    its own list without promoting it; only get() hits count as references
 *    (a read-modify-write must not make a block look frequently used).
 *  - The p step on a ghost hit is the ghost's size times the ghost-list
 *    ratio, capped at 10 (arc.c's arc_adapt).
 *  - An entry larger than the whole cache is not cached at all (rather than
 *    flushing everything for it); arc.c never sees one, its blocks are
 *    at most 16 MiB.
 */
import { err } from '../../errors.js';

/**
 * A cache key. Numbers hash far faster than strings in a V8 Map (the pool's block
 * keys are numbers: get+delete+set measured ~140 ns against ~800 for the strings
 * they replaced, at 100k entries).
 */
export type ArcKey = string | number;

export interface ArcOptions {
  /** Capacity in bytes (ZFS's c), an integer. 0 caches nothing. */
  maxBytes: number;
}

export interface ArcStats {
  /** get() calls that returned a value. */
  hits: number;
  /** get() calls that returned undefined (ghost hits included). */
  misses: number;
  /** Hits found in T1 (MRU). */
  mruHits: number;
  /** Hits found in T2 (MFU). */
  mfuHits: number;
  /** Misses whose key was in B1 (MRU ghost): T1 was too small. */
  ghostMruHits: number;
  /** Misses whose key was in B2 (MFU ghost): T2 was too small. */
  ghostMfuHits: number;
  /** Resident entries evicted to make room (not delete() or clear()). */
  evictions: number;
  /** Resident bytes, T1 + T2. */
  size: number;
  /** The adaptive target for T1 in bytes (ZFS's arc_p). */
  target: number;
  /** Capacity (ZFS's c). */
  maxBytes: number;
  mruBytes: number;
  mfuBytes: number;
  mruGhostBytes: number;
  mfuGhostBytes: number;
  /** Resident entries. */
  entries: number;
  /** Ghost entries. */
  ghostEntries: number;
}

const T1 = 0, T2 = 1, B1 = 2, B2 = 3;
type ListId = typeof T1 | typeof T2 | typeof B1 | typeof B2;
const LIST_NAMES = ['MRU', 'MFU', 'MRU ghost', 'MFU ghost'] as const;

interface Node<V> {
  readonly key: ArcKey;
  /** Set with the value: get(), take() and delete() with another tag do not see it. */
  tag: number;
  /** undefined exactly when the node is a ghost (B1/B2): ghosts hold no values. */
  value: V | undefined;
  bytes: number;
  list: ListId;
  /** Ghosts only: p was already adapted for this key by a get(); set() must not adapt again. */
  adapted: boolean;
  /** get() has handed the value out: someone besides the cache may hold it (see take()). */
  shared: boolean;
  /** markSpare(): from settle(spareAt) on, only the cache holds the value, so take() may hand it over (Infinity: never). */
  spareAt: number;
  prev: Node<V> | null; // toward LRU
  next: Node<V> | null; // toward MRU
}

/** An intrusive doubly-linked list with byte and entry counts. */
class List<V> {
  head: Node<V> | null = null; // LRU end
  tail: Node<V> | null = null; // MRU end
  bytes = 0;
  count = 0;

  /** Append at the MRU end. */
  push(n: Node<V>): void {
    n.prev = this.tail;
    n.next = null;
    if (this.tail) this.tail.next = n;
    else this.head = n;
    this.tail = n;
    this.bytes += n.bytes;
    this.count++;
  }

  remove(n: Node<V>): void {
    if (n.prev) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = n.next = null;
    this.bytes -= n.bytes;
    this.count--;
  }
}

/** Largest multiplier of a ghost hit's p step (arc.c caps it the same way). */
const MAX_ADAPT_MULT = 10;

function checkMax(maxBytes: number): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw err.inval(`bad ARC size ${maxBytes}`);
}

export class Arc<V> {
  private c: number;
  private p = 0;
  private readonly index = new Map<ArcKey, Node<V>>();
  private readonly lists4: [List<V>, List<V>, List<V>, List<V>] = [new List(), new List(), new List(), new List()];

  private hits = 0;
  private misses = 0;
  private mruHits = 0;
  private mfuHits = 0;
  private ghostMruHits = 0;
  private ghostMfuHits = 0;
  private evictions = 0;

  /** Called with each resident value the cache drops (not for ghosts, which hold none). */
  onDrop: ((key: ArcKey, value: V) => void) | null = null;

  constructor(opts: ArcOptions) {
    checkMax(opts.maxBytes);
    this.c = opts.maxBytes;
  }

  /** The cached value, or undefined. A hit in T1 promotes the entry to T2. */
  /**
   * `handOut` false: the caller copies the value before it yields (a synchronous copy), so
   * no reference escapes and take() may still hand the value over later.
   */
  get(key: ArcKey, tag = 0, handOut = true): V | undefined {
    const n = this.index.get(key);
    if (n === undefined || n.tag !== tag) {
      this.misses++;
      return undefined;
    }
    switch (n.list) {
      case T1:
        if (handOut) n.shared = true;
        // Second reference: MRU -> MFU. Resident bytes are unchanged, so no eviction.
        this.hits++;
        this.mruHits++;
        this.move(n, T2);
        return n.value;
      case T2:
        if (handOut) n.shared = true;
        this.hits++;
        this.mfuHits++;
        this.move(n, T2);
        return n.value;
      case B1:
        this.misses++;
        this.ghostMruHits++;
        if (!n.adapted) {
          this.adaptTowardMru(n.bytes);
          n.adapted = true;
        }
        return undefined;
      case B2:
        this.misses++;
        this.ghostMfuHits++;
        if (!n.adapted) {
          this.adaptTowardMfu(n.bytes);
          n.adapted = true;
        }
        return undefined;
    }
  }

  /** The resident value of key (with this tag, if one is given), without counting a reference or a hit. */
  peek(key: ArcKey, tag?: number): V | undefined {
    const n = this.index.get(key);
    return n !== undefined && n.list <= T2 && (tag === undefined || n.tag === tag) ? n.value : undefined;
  }

  /**
   * Swap the value of a resident key for an equivalent one (same contents,
   * same size), keeping its place; onDrop is not called. False if not resident.
   */
  replace(key: ArcKey, value: V): boolean {
    const n = this.index.get(key);
    if (n === undefined || n.list > T2) return false;
    n.value = value;
    return true;
  }

  /** Whether key is resident, without counting a reference or a hit. */
  has(key: ArcKey): boolean {
    const n = this.index.get(key);
    return n !== undefined && n.list <= T2;
  }

  /**
   * Cache value under key, accounted as `bytes` (an integer >= 1). A new key
   * enters T1; a key remembered in a ghost list enters T2 (it was wanted
   * again after eviction); a resident key keeps its list.
   */
  set(key: ArcKey, value: V, bytes: number, tag = 0): void {
    // Integers keep the byte sums exact; >= 1 bounds the number of keys tracked.
    if (!Number.isSafeInteger(bytes) || bytes < 1) throw err.inval(`ARC entry size must be a positive integer, got ${bytes}`);
    if (bytes > this.c) {
      // Can never fit; drop any older value so get() cannot return it.
      this.delete(key);
      return;
    }
    const n = this.index.get(key);
    let dest: ListId = T1;
    let fromB2 = false;
    if (n !== undefined) {
      // Unlink it first so making room can neither evict it nor count it twice.
      this.lists4[n.list].remove(n);
      this.index.delete(key);
      if (n.list <= T2 && n.value !== value) this.onDrop?.(key, n.value!);
      // Another tag: another value altogether (the pool: another block in the same place), new to the cache.
      if (n.tag !== tag) dest = T1;
      else if (n.list === T2) dest = T2;
      else if (n.list === B1) {
        if (!n.adapted) this.adaptTowardMru(n.bytes);
        dest = T2;
      } else if (n.list === B2) {
        if (!n.adapted) this.adaptTowardMfu(n.bytes);
        dest = T2;
        fromB2 = true;
      }
    }
    this.makeRoom(bytes, fromB2);
    const node: Node<V> = { key, tag, value, bytes, list: dest, adapted: false, shared: false, spareAt: Infinity, prev: null, next: null };
    this.lists4[dest].push(node);
    this.index.set(key, node);
    this.trimGhosts();
  }

  /** Epochs settled so far (settle()). */
  private settled = -Infinity;

  /**
   * Promise that once settle(epoch) has been called, nothing but this cache holds the
   * resident value of key (if it is still `value`), so take() may hand it over then.
   * epoch Infinity takes the promise back. A value get() has returned is never spare.
   */
  markSpare(key: ArcKey, value: V, epoch: number): void {
    const n = this.index.get(key);
    if (n !== undefined && n.list <= T2 && n.value === value) n.spareAt = epoch;
  }

  /** Epoch `epoch` is over: values marked spare for it and earlier may be taken. */
  settle(epoch: number): void {
    if (epoch > this.settled) this.settled = epoch;
  }

  /**
   * Hand over the resident value of key, and forget it, if it is spare (markSpare, settled)
   * and no get() has returned it since it was cached: the caller then holds its only
   * reference and may modify it. Otherwise, or if `refuse(value)`, undefined, and nothing
   * changes.
   */
  take(key: ArcKey, tag = 0, refuse?: (value: V) => boolean): V | undefined {
    const n = this.index.get(key);
    if (n === undefined || n.tag !== tag || n.list > T2 || n.shared || n.spareAt > this.settled || refuse?.(n.value!)) return undefined;
    this.hits++;
    if (n.list === T1) this.mruHits++;
    else this.mfuHits++;
    this.drop(n);
    return n.value;
  }

  /** Forget key entirely (resident or ghost): its data is gone (a freed block). With `tag`, only if it is the entry's. */
  delete(key: ArcKey, tag?: number): boolean {
    const n = this.index.get(key);
    if (n === undefined || (tag !== undefined && n.tag !== tag)) return false;
    this.drop(n);
    return true;
  }

  /** Forget a node of any list, telling onDrop if it held a value. */
  private drop(n: Node<V>): void {
    this.forget(this.lists4[n.list], n);
    if (n.list <= T2) this.onDrop?.(n.key, n.value!);
  }

  /** Drop every entry and ghost and reset p. Counters are cumulative and stay. */
  clear(): void {
    if (this.onDrop) for (const n of this.index.values()) if (n.list <= T2) this.onDrop(n.key, n.value!);
    this.index.clear();
    for (let i = 0; i < 4; i++) this.lists4[i] = new List();
    this.p = 0;
  }

  /** Change the capacity; shrinking evicts (T1 over target first, as any eviction). */
  resize(maxBytes: number): void {
    checkMax(maxBytes);
    this.c = maxBytes;
    if (this.p > maxBytes) this.p = maxBytes;
    this.makeRoom(0, false);
    this.trimGhosts();
  }

  stats(): ArcStats {
    const [t1, t2, b1, b2] = this.lists4;
    return {
      hits: this.hits,
      misses: this.misses,
      mruHits: this.mruHits,
      mfuHits: this.mfuHits,
      ghostMruHits: this.ghostMruHits,
      ghostMfuHits: this.ghostMfuHits,
      evictions: this.evictions,
      size: t1.bytes + t2.bytes,
      target: this.p,
      maxBytes: this.c,
      mruBytes: t1.bytes,
      mfuBytes: t2.bytes,
      mruGhostBytes: b1.bytes,
      mfuGhostBytes: b2.bytes,
      entries: t1.count + t2.count,
      ghostEntries: b1.count + b2.count,
    };
  }

  /** The keys of each list, LRU first, for tests and debugging. O(n): never on a hot path. */
  lists(): { mru: ArcKey[]; mfu: ArcKey[]; mruGhost: ArcKey[]; mfuGhost: ArcKey[] } {
    const keys = (l: List<V>) => {
      const out: ArcKey[] = [];
      for (let n = l.head; n; n = n.next) out.push(n.key);
      return out;
    };
    const [t1, t2, b1, b2] = this.lists4;
    return { mru: keys(t1), mfu: keys(t2), mruGhost: keys(b1), mfuGhost: keys(b2) };
  }

  /** Verify every invariant in the header comment; throws on a violation. O(n). */
  check(): void {
    const fail = (what: string): never => {
      throw new Error(`ARC invariant violated: ${what}`);
    };
    let total = 0;
    this.lists4.forEach((l, id) => {
      let bytes = 0;
      let count = 0;
      let prev: Node<V> | null = null;
      for (let n = l.head; n; prev = n, n = n.next) {
        if (n.prev !== prev) fail(`${LIST_NAMES[id]} links`);
        if (n.list !== id) fail(`${n.key} tagged with the wrong list`);
        if (this.index.get(n.key) !== n) fail(`${n.key} not indexed`);
        if ((id === B1 || id === B2) !== (n.value === undefined)) fail(`${n.key}: ghosts, and only ghosts, hold no value`);
        bytes += n.bytes;
        count++;
      }
      if (l.tail !== prev) fail(`${LIST_NAMES[id]} tail`);
      if (bytes !== l.bytes || count !== l.count) fail(`${LIST_NAMES[id]} counts`);
      total += count;
    });
    if (total !== this.index.size) fail('index size');
    const [t1, t2, b1, b2] = this.lists4;
    if (t1.bytes + t2.bytes > this.c) fail('t1 + t2 <= c');
    if (t1.bytes + b1.bytes > this.c) fail('t1 + b1 <= c');
    if (t1.bytes + t2.bytes + b1.bytes + b2.bytes > 2 * this.c) fail('directory <= 2c');
    if (this.p < 0 || this.p > this.c) fail('0 <= p <= c');
  }

  /** Move a node to the MRU end of a list (possibly its own). */
  private move(n: Node<V>, to: ListId): void {
    this.lists4[n.list].remove(n);
    n.list = to;
    this.lists4[to].push(n);
  }

  /** A B1 hit: recency was undervalued; grow T1's target (the paper's delta1). */
  private adaptTowardMru(bytes: number): void {
    const b1 = this.lists4[B1].bytes, b2 = this.lists4[B2].bytes;
    const mult = b1 >= b2 ? 1 : Math.min(MAX_ADAPT_MULT, b2 / b1);
    this.p = Math.min(this.c, this.p + bytes * mult);
  }

  /** A B2 hit: frequency was undervalued; shrink T1's target (the paper's delta2). */
  private adaptTowardMfu(bytes: number): void {
    const b1 = this.lists4[B1].bytes, b2 = this.lists4[B2].bytes;
    const mult = b2 >= b1 ? 1 : Math.min(MAX_ADAPT_MULT, b1 / b2);
    this.p = Math.max(0, this.p - bytes * mult);
  }

  /** Evict until `bytes` more fit. fromB2: the incoming key was a B2 ghost (the paper's REPLACE). */
  private makeRoom(bytes: number, fromB2: boolean): void {
    const [t1, t2] = this.lists4;
    while (t1.bytes + t2.bytes + bytes > this.c && (t1.head || t2.head)) {
      const takeT1 = t1.head !== null && (t2.head === null || t1.bytes > this.p || (fromB2 && t1.bytes === this.p));
      const victim = takeT1 ? t1.head! : t2.head!;
      const dropped = victim.value!;
      victim.value = undefined; // a ghost keeps the key and size only; let the data go
      this.onDrop?.(victim.key, dropped);
      victim.adapted = false;
      this.move(victim, takeT1 ? B1 : B2);
      this.evictions++;
    }
  }

  /** Keep the ghost lists within the directory bounds, forgetting their oldest keys. */
  private trimGhosts(): void {
    const [t1, t2, b1, b2] = this.lists4;
    while (b1.head && t1.bytes + b1.bytes > this.c) this.forget(b1, b1.head);
    while (b2.head && t1.bytes + t2.bytes + b1.bytes + b2.bytes > 2 * this.c) this.forget(b2, b2.head);
  }

  private forget(l: List<V>, n: Node<V>): void {
    l.remove(n);
    this.index.delete(n.key);
  }
}
