/**
 * The write path: data, compressed data, zeroes and discard.
 *
 * Rules kept here:
 * - A cluster is written in place only if its L2 entry has COPIED set
 *   (refcount exactly 1); anything shared or compressed is copied to a fresh
 *   cluster first (copy-on-write), and the old reference is dropped through
 *   the deferred free queue (refcount.ts), never immediately.
 * - New clusters get COPIED at once (allocate() sets refcount 1), so the flag
 *   stays exact.
 * - Every data write goes through checkOverlap(): a data cluster that
 *   overlaps metadata means the tables are corrupt, and we stop.
 * - Data is written before the L2 entry is changed in the cache; the L2 table
 *   reaches the disk later, after the refcounts (cache.ts beforeWrite).
 */
import { err } from '../../src/errors.js';
import { type L2Entry, Kind } from './cluster.js';
import * as C from './constants.js';
import type { Qcow2Image } from './image.js';

function inPlace(img: Qcow2Image, e: L2Entry): boolean {
  return !e.compressed && e.host !== 0 && e.copied && (img.map.ext || !e.zeroFlag);
}

/** Queue the drop of every host cluster an entry references. */
function freeOld(img: Qcow2Image, e: L2Entry): void {
  const refs = img.refs!;
  const cs = img.map.cs;
  if (e.compressed) {
    for (let c = Math.floor(e.host / cs); c <= Math.floor((e.host + e.csize - 1) / cs); c++) refs.free(c);
  } else if (e.host !== 0) {
    refs.free(e.host / cs);
  }
}

const fresh = (host: number, alloc: number): L2Entry => ({ host, copied: true, compressed: false, zeroFlag: false, alloc, zero: 0, csize: 0 });

function subMask(s0: number, s1: number): number {
  return s1 - s0 >= 32 ? C.ALL_SUBCLUSTERS : (((1 << (s1 - s0)) - 1) << s0) >>> 0;
}

async function writable(img: Qcow2Image) {
  if (img.readOnly) throw err.perm(`'${img.path}' is open read-only`);
  return img.refs ?? (await img.loadRefcounts());
}

/**
 * Write `data` at guest `offset`. With `behind` (write-behind, see
 * Qcow2OpenOptions.writeBehind), runs of fresh clusters over blank entries
 * are linked at once and their data writes left in flight in `behind`; any
 * other kind of write first waits for the data in flight.
 */
export async function writeData(img: Qcow2Image, offset: number, data: Buffer, compress: boolean, behind?: Array<Promise<void>>): Promise<void> {
  const refs = await writable(img);
  const map = img.map;
  let pos = 0;
  while (pos < data.length) {
    const g = offset + pos;
    const l1i = Math.floor(g / map.l2Span);
    if (l1i >= map.l1.length) throw err.inval(`qcow2: write at ${g} is past the end of the image`);
    const tableEnd = Math.min(offset + data.length, (l1i + 1) * map.l2Span);
    const { buf, off } = await map.l2ForWrite(l1i, refs);
    if (!img.metadataClusters().has(off / map.cs)) img.invalidateMetadata();
    img.checkL2Placement(off);
    await writeInTable(img, buf, off, g, data.subarray(pos, tableEnd - offset), compress, behind);
    pos = tableEnd - offset;
  }
}

async function writeInTable(img: Qcow2Image, l2: Buffer, l2off: number, g: number, chunk: Buffer, compress: boolean, behind?: Array<Promise<void>>): Promise<void> {
  const map = img.map;
  const refs = img.refs!;
  const file = img.file;
  const cs = map.cs;
  const unit = map.unit;
  const end = g + chunk.length;
  let p = g;
  const setEntry = (idx: number, e: L2Entry) => {
    map.encode(l2, idx, e);
    map.cache.markDirty(l2off, l2);
  };
  while (p < end) {
    const c = Math.floor(p / cs);
    const idx = c % map.l2Entries;
    const cStart = c * cs;
    const a = p - cStart;
    const b = Math.min(end, cStart + cs) - cStart;
    const src = chunk.subarray(p - g, p - g + (b - a));
    const blank = behind && a === 0 && b === cs && !compress ? map.blankRun(l2, idx, Math.min(Math.floor((end - cStart) / cs), map.l2Entries - idx)) : 0;
    if (blank > 0) {
      // Write-behind: a run of whole blank clusters gets fresh clusters, linked now, written behind the lock.
      const n = blank;
      const host = await refs.allocate(n);
      img.checkOverlap(host, n * cs);
      const first = idx;
      const io = file.write(host, chunk.subarray(p - g, p - g + n * cs)).catch((e) => {
        // Unlink the clusters (they leak, as after a crash) before anything that
        // waits for data in flight (every other operation, any L2 write-out) goes on.
        for (let k = 0; k < n; k++) {
          const cur = map.decode(l2, first + k);
          if (cur.host === host + k * cs && !cur.compressed) map.encode(l2, first + k, { host: 0, copied: false, compressed: false, zeroFlag: false, alloc: 0, zero: 0, csize: 0 });
        }
        map.cache.markDirty(l2off, l2);
        throw e;
      });
      img.trackData(io);
      behind!.push(io);
      map.encodeFreshRun(l2, idx, n, host);
      map.cache.markDirty(l2off, l2);
      p += n * cs;
      continue;
    }
    // Anything else may touch clusters whose data is still in flight.
    if (behind) await img.drainData();
    const e = map.decode(l2, idx);

    if (compress && a === 0 && b === cs) {
      const z = img.codec.compress(src);
      if (z) {
        const host = await refs.allocateBytes(z.length);
        img.checkOverlap(host, z.length);
        await file.write(host, z);
        freeOld(img, e);
        setEntry(idx, { host, copied: false, compressed: true, zeroFlag: false, alloc: 0, zero: 0, csize: z.length });
        p += cs;
        continue;
      }
    }

    if (inPlace(img, e)) {
      if (map.ext) {
        const s0 = Math.floor(a / unit);
        const s1 = Math.ceil(b / unit);
        let wa = a;
        let wb = b;
        let wbuf = src;
        // A partly written subcluster that was not allocated gets the rest of its bytes from below.
        const headFill = a % unit !== 0 && !((e.alloc >>> s0) & 1);
        const tailFill = b % unit !== 0 && !((e.alloc >>> (s1 - 1)) & 1);
        if (headFill || tailFill) {
          wa = headFill ? s0 * unit : a;
          wb = tailFill ? s1 * unit : b;
          wbuf = await img.readLocked(cStart + wa, wb - wa, undefined, true);
          src.copy(wbuf, a - wa);
        }
        img.checkOverlap(e.host + wa, wb - wa);
        await file.write(e.host + wa, wbuf);
        const mask = subMask(s0, s1);
        if ((e.alloc & mask) >>> 0 !== mask || (e.zero & mask) !== 0) {
          setEntry(idx, { ...e, alloc: (e.alloc | mask) >>> 0, zero: (e.zero & ~mask) >>> 0 });
        }
      } else {
        img.checkOverlap(e.host + a, b - a);
        await file.write(e.host + a, src);
      }
      p = cStart + b;
      continue;
    }

    if (!map.ext && e.zeroFlag && e.host !== 0 && e.copied) {
      // Preallocated zero cluster that is ours: fill it and drop the zero flag.
      const content = Buffer.alloc(cs);
      src.copy(content, a);
      img.checkOverlap(e.host, cs);
      await file.write(e.host, content);
      setEntry(idx, fresh(e.host, C.ALL_SUBCLUSTERS));
      p = cStart + b;
      continue;
    }

    if (a === 0 && b === cs) {
      // A run of whole clusters, none writable in place: one allocation, one write.
      let n = 1;
      while (!compress && cStart + (n + 1) * cs <= end && idx + n < map.l2Entries) {
        if (!map.isBlank(l2, idx + n)) {
          const en = map.decode(l2, idx + n);
          if (inPlace(img, en) || (!map.ext && en.zeroFlag && en.host !== 0 && en.copied)) break;
        }
        n++;
      }
      const host = await refs.allocate(n);
      img.checkOverlap(host, n * cs);
      await file.write(host, chunk.subarray(p - g, p - g + n * cs));
      for (let k = 0; k < n; k++) if (!map.isBlank(l2, idx + k)) freeOld(img, map.decode(l2, idx + k));
      map.encodeFreshRun(l2, idx, n, host);
      map.cache.markDirty(l2off, l2);
      p += n * cs;
      continue;
    }

    // Partial write to a cluster we do not own: copy-on-write into a fresh one.
    const host = await refs.allocate(1);
    const view = await img.readLocked(cStart, cs, undefined, true);
    src.copy(view, a);
    if (map.ext && !e.compressed) {
      const touched = subMask(Math.floor(a / unit), Math.ceil(b / unit));
      const mask = (touched | (e.host !== 0 ? e.alloc : 0)) >>> 0;
      const first = 31 - Math.clz32(mask & -mask);
      const last = 31 - Math.clz32(mask);
      img.checkOverlap(host, cs);
      await file.write(host + first * unit, view.subarray(first * unit, (last + 1) * unit));
      freeOld(img, e);
      setEntry(idx, { ...fresh(host, mask), zero: (e.zero & ~mask) >>> 0 });
    } else {
      img.checkOverlap(host, cs);
      await file.write(host, view);
      freeOld(img, e);
      setEntry(idx, fresh(host, map.ext ? C.ALL_SUBCLUSTERS : 0));
    }
    p = cStart + b;
  }
}

/**
 * Zero (or discard) a range. Whole clusters become zero clusters (v3: the
 * zero flag / zero bitmap; v2 without backing: unallocated) and release
 * their host clusters; partial clusters get real zero bytes unless they
 * already read as zeroes.
 */
export async function writeZeroRange(img: Qcow2Image, offset: number, length: number, trim: boolean): Promise<void> {
  const refs = await writable(img);
  const map = img.map;
  const cs = map.cs;
  const end = offset + length;
  const noBacking = img.backing === null;
  let p = offset;
  while (p < end) {
    const l1i = Math.floor(p / map.l2Span);
    const tableEnd = Math.min(end, (l1i + 1) * map.l2Span);
    if (map.l1[l1i] === 0 && noBacking) {
      p = tableEnd; // nothing allocated and nothing below: already zero
      continue;
    }
    while (p < tableEnd) {
      const c = Math.floor(p / cs);
      const cEnd = Math.min(tableEnd, (c + 1) * cs);
      const whole = p === c * cs && cEnd === (c + 1) * cs;
      if (whole && (img.header.version === 3 || noBacking)) {
        const { buf, off } = await map.l2ForWrite(l1i, refs);
        img.checkL2Placement(off);
        const idx = c % map.l2Entries;
        const e = map.decode(buf, idx);
        const ne: L2Entry = { host: 0, copied: false, compressed: false, zeroFlag: false, alloc: 0, zero: 0, csize: 0 };
        // v2 has no zero flag (and gets here only without a backing file); a discard with nothing below can be a plain hole.
        if (img.header.version === 3 && !(trim && noBacking)) {
          if (map.ext) ne.zero = C.ALL_SUBCLUSTERS;
          else ne.zeroFlag = true;
        }
        freeOld(img, e);
        map.encode(buf, idx, ne);
        map.cache.markDirty(off, buf);
      } else {
        const segs = await map.mapRange(p, cEnd - p);
        const zero = segs.every((s) => s.kind === Kind.Zero || (s.kind === Kind.Unalloc && noBacking));
        if (!zero) await writeData(img, p, Buffer.alloc(cEnd - p), false);
      }
      p = cEnd;
    }
  }
}
