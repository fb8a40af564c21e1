/**
 * RangeTree: a set of disjoint, maximally merged half-open segments
 * [start, end) of abstract units (the allocator uses sectors), the role of
 * ZFS's range_tree_t.
 *
 * Representation: a treap (randomised balanced BST) keyed by segment start,
 * stored in parallel typed arrays rather than objects. A metaslab may hold
 * hundreds of thousands of fragments; typed-array nodes keep that to ~40
 * bytes per segment and produce no garbage for the GC to chase.
 *
 * Each node is augmented with the largest segment length in its subtree.
 * That makes "first segment at or after X with length >= N" an O(log n)
 * descent, which is what lets first-fit-from-cursor allocation (ZFS's
 * metaslab_df) run in logarithmic time without ZFS's bounded linear scan
 * and separate size-sorted tree. The smallest length in each subtree is
 * kept too, so "first segment with N <= length < M" (a hole, not a run:
 * firstFitBelow) skips subtrees that are all too small or all too large.
 *
 * The tree also keeps a histogram of segment sizes by power of two (count
 * and exact space per bucket), like a space map's smp_histogram, so the
 * fragmentation metric costs O(64), not a walk.
 *
 * Callers keep the preconditions (no overlapping add, remove only what is
 * present); the allocator checks them first so that a bad request throws
 * without having changed anything.
 */

const NIL = 0;
const INITIAL_NODES = 64;

export class RangeTree {
  // Node 0 is the nil sentinel: max[0] stays 0 so pull() needs no branches.
  private starts = new Float64Array(INITIAL_NODES);
  private ends = new Float64Array(INITIAL_NODES);
  private maxes = new Float64Array(INITIAL_NODES);
  // mins[0] (nil) is +Infinity for the same reason.
  private mins = new Float64Array(INITIAL_NODES).fill(Infinity, 0, 1);
  private lefts = new Int32Array(INITIAL_NODES);
  private rights = new Int32Array(INITIAL_NODES);
  private pris = new Uint32Array(INITIAL_NODES);
  private nextNode = 1;
  private recycled: number[] = [];
  private root = NIL;
  /** xorshift32 state for treap priorities; per instance (no module state). */
  private seed = 0x9e3779b9;
  /** Path scratch for in-place resizes (refreshPath). */
  private path = new Int32Array(128);

  /** Number of segments. */
  count = 0;
  /** Sum of segment lengths. */
  space = 0;
  /** Segment count per bucket floor(log2(length)). */
  readonly histCount = new Float64Array(64);
  /** Exact space per bucket floor(log2(length)). */
  readonly histSpace = new Float64Array(64);

  /** Length of the largest segment (0 when empty). O(1). */
  maxLength(): number {
    return this.maxes[this.root]!;
  }

  /** The segment containing unit `pos` as [start, end], or null. */
  containing(pos: number): [number, number] | null {
    const t = this.findContaining(pos);
    return t === NIL ? null : [this.starts[t]!, this.ends[t]!];
  }

  /** True if [a, b) lies entirely inside one segment. */
  contains(a: number, b: number): boolean {
    const t = this.findContaining(a);
    return t !== NIL && this.ends[t]! >= b;
  }

  /** True if any unit of [a, b) lies inside some segment. */
  overlaps(a: number, b: number): boolean {
    // Segments are disjoint and ordered, so an interval BST descent works:
    // a node wholly left of [a,b) has only left-er nodes in its left subtree.
    let t = this.root;
    while (t !== NIL) {
      if (this.ends[t]! <= a) t = this.rights[t]!;
      else if (this.starts[t]! >= b) t = this.lefts[t]!;
      else return true;
    }
    return false;
  }

  /**
   * Add [a, b), which must not overlap any segment, merging with neighbours
   * that touch it so segments stay maximal (the allocator relies on that
   * for maxLength() to mean "largest contiguous run").
   */
  add(a: number, b: number): void {
    const l = a > 0 ? this.findContaining(a - 1) : NIL; // ends exactly at a
    const r = this.findContaining(b); // starts exactly at b
    if (l !== NIL && r !== NIL) {
      const rEnd = this.ends[r]!;
      this.deleteNode(r);
      this.resize(l, this.starts[l]!, rEnd);
    } else if (l !== NIL) {
      this.resize(l, this.starts[l]!, b);
    } else if (r !== NIL) {
      this.resize(r, a, this.ends[r]!);
    } else {
      this.insertNode(a, b);
    }
  }

  /** Remove [a, b), which must lie inside a single segment. */
  remove(a: number, b: number): void {
    const t = this.findContaining(a);
    if (t === NIL || this.ends[t]! < b) throw new Error(`RangeTree.remove: [${a}, ${b}) not present`);
    const s = this.starts[t]!;
    const e = this.ends[t]!;
    if (s === a && e === b) this.deleteNode(t);
    else if (s === a) this.resize(t, b, e);
    else if (e === b) this.resize(t, s, a);
    else {
      this.resize(t, s, a);
      this.insertNode(b, e);
    }
  }

  /**
   * First-fit from a cursor: the lowest position p >= from such that [p, p+len)
   * is inside one segment, or -1. A segment containing `from` is used from
   * `from` onwards, so consecutive allocations continue exactly where the
   * previous one ended (sequential writes stay sequential on disk).
   */
  firstFit(from: number, len: number): number {
    if (this.maxes[this.root]! < len) return -1;
    const t = this.findContaining(from);
    if (t !== NIL && this.ends[t]! - from >= len) return from;
    const n = this.firstFitNode(this.root, from, len);
    return n === NIL ? -1 : this.starts[n]!;
  }

  /**
   * Like firstFit, but only in segments shorter than `below`: the lowest
   * segment start >= from whose length is in [len, below), else the lowest
   * such start before `from`, else -1. For filling holes while keeping
   * large runs whole (SpaceAllocator's fragmented metaslabs).
   *
   * The min/max pruning cannot skip a subtree that mixes too-small holes
   * with runs: when every segment is one or the other the search would
   * visit them all (~100 us at 100k segments), so it stops after `budget`
   * nodes: then it returns -1 or a fitting segment that need not be the
   * first, and on -1 the caller falls back to plain first fit.
   */
  firstFitBelow(from: number, len: number, below: number, budget = 512): number {
    if (this.maxes[this.root]! < len || this.mins[this.root]! >= below) return -1;
    this.visits = budget;
    let n = this.fitBelowNode(this.root, from, len, below);
    if (n === NIL && from > 0) n = this.fitBelowNode(this.root, 0, len, below);
    return n === NIL ? -1 : this.starts[n]!;
  }

  /** Nodes firstFitBelow may still visit. */
  private visits = 0;

  /** Segments in order as [start, end]. The tree must not change during iteration. */
  *segments(): Generator<[number, number]> {
    const stack: number[] = [];
    let t = this.root;
    while (t !== NIL || stack.length > 0) {
      while (t !== NIL) {
        stack.push(t);
        t = this.lefts[t]!;
      }
      t = stack.pop()!;
      yield [this.starts[t]!, this.ends[t]!];
      t = this.rights[t]!;
    }
  }

  // ---- internals ----

  private findContaining(pos: number): number {
    let t = this.root;
    while (t !== NIL) {
      if (pos < this.starts[t]!) t = this.lefts[t]!;
      else if (pos >= this.ends[t]!) t = this.rights[t]!;
      else return t;
    }
    return NIL;
  }

  /**
   * Leftmost node with start >= from and length >= len. Fully-in-range
   * subtrees are entered only when their max says a hit exists, so the
   * work is one boundary path plus one guided descent: O(log n).
   */
  private firstFitNode(t: number, from: number, len: number): number {
    while (t !== NIL && this.maxes[t]! >= len) {
      if (this.starts[t]! < from) {
        t = this.rights[t]!;
        continue;
      }
      const l = this.firstFitNode(this.lefts[t]!, from, len);
      if (l !== NIL) return l;
      if (this.ends[t]! - this.starts[t]! >= len) return t;
      t = this.rights[t]!;
    }
    return NIL;
  }

  /**
   * Leftmost node with start >= from and len <= length < below, skipping
   * subtrees whose lengths are all too small (max) or all too large (min).
   */
  private fitBelowNode(t: number, from: number, len: number, below: number): number {
    if (t === NIL || this.maxes[t]! < len || this.mins[t]! >= below || this.visits-- <= 0) return NIL;
    if (this.starts[t]! < from) return this.fitBelowNode(this.rights[t]!, from, len, below);
    const l = this.fitBelowNode(this.lefts[t]!, from, len, below);
    if (l !== NIL) return l;
    const own = this.ends[t]! - this.starts[t]!;
    if (own >= len && own < below) return t;
    return this.fitBelowNode(this.rights[t]!, from, len, below);
  }

  private pull(t: number): void {
    const own = this.ends[t]! - this.starts[t]!;
    const lt = this.lefts[t]!;
    const rt = this.rights[t]!;
    const l = this.maxes[lt]!;
    const r = this.maxes[rt]!;
    this.maxes[t] = own > l ? (own > r ? own : r) : l > r ? l : r;
    const lm = this.mins[lt]!;
    const rm = this.mins[rt]!;
    this.mins[t] = own < lm ? (own < rm ? own : rm) : lm < rm ? lm : rm;
  }

  private bucket(len: number): number {
    return len < 4294967296 ? 31 - Math.clz32(len) : Math.floor(Math.log2(len));
  }

  private account(len: number, sign: 1 | -1): void {
    const b = this.bucket(len);
    this.histCount[b] = this.histCount[b]! + sign;
    this.histSpace[b] = this.histSpace[b]! + sign * len;
    this.space += sign * len;
    this.count += sign;
  }

  private newNode(a: number, b: number): number {
    let t = this.recycled.pop();
    if (t === undefined) {
      if (this.nextNode === this.starts.length) this.grow();
      t = this.nextNode++;
    }
    this.starts[t] = a;
    this.ends[t] = b;
    this.maxes[t] = b - a;
    this.mins[t] = b - a;
    this.lefts[t] = NIL;
    this.rights[t] = NIL;
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    this.pris[t] = this.seed;
    return t;
  }

  private grow(): void {
    const n = this.starts.length * 2;
    const f = (old: Float64Array) => {
      const a = new Float64Array(n);
      a.set(old);
      return a;
    };
    const i = (old: Int32Array) => {
      const a = new Int32Array(n);
      a.set(old);
      return a;
    };
    this.starts = f(this.starts);
    this.ends = f(this.ends);
    this.maxes = f(this.maxes);
    this.mins = f(this.mins);
    this.lefts = i(this.lefts);
    this.rights = i(this.rights);
    const p = new Uint32Array(n);
    p.set(this.pris);
    this.pris = p;
  }

  private insertNode(a: number, b: number): void {
    const n = this.newNode(a, b);
    this.account(b - a, 1);
    this.root = this.insertAt(this.root, n);
  }

  /** Treap insert: BST insert by start, then rotate up while priority is higher. */
  private insertAt(t: number, n: number): number {
    if (t === NIL) return n;
    if (this.starts[n]! < this.starts[t]!) {
      const l = this.insertAt(this.lefts[t]!, n);
      this.lefts[t] = l;
      if (this.pris[l]! > this.pris[t]!) {
        // rotate right
        this.lefts[t] = this.rights[l]!;
        this.rights[l] = t;
        this.pull(t);
        this.pull(l);
        return l;
      }
    } else {
      const r = this.insertAt(this.rights[t]!, n);
      this.rights[t] = r;
      if (this.pris[r]! > this.pris[t]!) {
        // rotate left
        this.rights[t] = this.lefts[r]!;
        this.lefts[r] = t;
        this.pull(t);
        this.pull(r);
        return r;
      }
    }
    this.pull(t);
    return t;
  }

  private deleteNode(n: number): void {
    const key = this.starts[n]!;
    this.account(this.ends[n]! - key, -1);
    this.root = this.deleteAt(this.root, key);
    this.recycled.push(n);
  }

  private deleteAt(t: number, key: number): number {
    if (t === NIL) throw new Error('RangeTree: delete of a missing node');
    const s = this.starts[t]!;
    if (key < s) this.lefts[t] = this.deleteAt(this.lefts[t]!, key);
    else if (key > s) this.rights[t] = this.deleteAt(this.rights[t]!, key);
    else return this.merge(this.lefts[t]!, this.rights[t]!);
    this.pull(t);
    return t;
  }

  /** Join two treaps where every key of a precedes every key of b. */
  private merge(a: number, b: number): number {
    if (a === NIL) return b;
    if (b === NIL) return a;
    if (this.pris[a]! > this.pris[b]!) {
      this.rights[a] = this.merge(this.rights[a]!, b);
      this.pull(a);
      return a;
    }
    this.lefts[b] = this.merge(a, this.lefts[b]!);
    this.pull(b);
    return b;
  }

  /**
   * Change a node's bounds in place. Callers only shrink a segment or grow it
   * into space no other segment holds, so the node keeps its rank and the
   * BST order survives; only the max augmentation on its root path changes.
   */
  private resize(t: number, a: number, b: number): void {
    this.account(this.ends[t]! - this.starts[t]!, -1);
    this.account(b - a, 1);
    this.starts[t] = a;
    this.ends[t] = b;
    // Walk root -> t by the (new) key, then recompute maxes bottom-up.
    let depth = 0;
    let x = this.root;
    for (;;) {
      if (depth === this.path.length) {
        const p = new Int32Array(depth * 2);
        p.set(this.path);
        this.path = p;
      }
      this.path[depth++] = x;
      if (x === t) break;
      x = a < this.starts[x]! ? this.lefts[x]! : this.rights[x]!;
      if (x === NIL) throw new Error('RangeTree: resize lost its node');
    }
    while (depth > 0) this.pull(this.path[--depth]!);
  }
}
