/**
 * check / repair: rebuild the reference counts from every structure that
 * references clusters (header, L1/L2 of the active state and of every
 * snapshot, snapshot table, refcount table and blocks, bitmaps) and compare
 * with the stored refcounts, as `qemu-img check` does:
 *   stored < computed  -> corruption (a cluster could be handed out twice);
 *   stored > computed  -> leak (space lost, harmless).
 * COPIED flags of the active tables must equal (refcount == 1).
 *
 * Repair sets stored refcounts to the computed ones (leaks: only where stored
 * is larger; all: everywhere, and COPIED flags too), then checks again.
 */
import { err } from '../../src/errors.js';
import { bitmapRanges } from './bitmaps.js';
import * as C from './constants.js';
import type { Qcow2Image } from './image.js';

export interface CheckResult {
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  checkErrors: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  imageEndOffset: number;
  messages: string[];
}

export interface CheckOptions {
  repair?: 'leaks' | 'all';
}

/** Cap on the reference array: a file of more clusters than this is refused rather than eating memory. */
const MAX_CHECK_CLUSTERS = 64 * 1024 * 1024;

interface Scan {
  counts: Uint32Array;
  corruptions: number;
  msgs: string[];
  copiedChecks: Array<{ cluster: number; copied: boolean; what: string; fix: () => Promise<void> }>;
  allocated: number;
  fragmented: number;
  compressed: number;
}

async function scan(img: Qcow2Image): Promise<Scan> {
  const cs = img.clusterSize;
  const file = img.file;
  const nFile = Math.ceil(file.size / cs);
  if (nFile > MAX_CHECK_CLUSTERS) throw err.notsup('qcow2: image file too large to check in memory');
  const s: Scan = { counts: new Uint32Array(nFile + 1), corruptions: 0, msgs: [], copiedChecks: [], allocated: 0, fragmented: 0, compressed: 0 };
  const inc = (off: number, bytes: number, what: string) => {
    const first = Math.floor(off / cs);
    const last = Math.floor((off + Math.max(bytes, 1) - 1) / cs);
    for (let c = first; c <= last; c++) {
      if (c >= nFile) {
        s.corruptions++;
        s.msgs.push(`ERROR ${what} at offset ${off}: cluster ${c} is beyond the end of the image file`);
        return;
      }
      s.counts[c]!++;
    }
  };
  inc(0, cs, 'header');
  const map = img.map;

  const walkL1 = async (l1: Float64Array, copiedL1: Uint8Array | null, active: boolean) => {
    for (let i = 0; i < l1.length; i++) {
      const l2off = l1[i]!;
      if (!l2off) continue;
      if (l2off % cs !== 0 || l2off + cs > file.size) {
        s.corruptions++;
        s.msgs.push(`ERROR l2_offset=${l2off}: L2 table is not cluster aligned or past the end of the file`);
        continue;
      }
      inc(l2off, cs, 'L2 table');
      if (active && copiedL1) {
        s.copiedChecks.push({
          cluster: l2off / cs,
          copied: copiedL1[i] === 1,
          what: `L1 entry ${i}`,
          fix: async () => map.setL1(i, l2off, !copiedL1[i]),
        });
      }
      const l2 = await file.readExact(l2off, cs, 'L2 table');
      let next = 0;
      for (let j = 0; j < map.l2Entries; j++) {
        const e = map.decode(l2, j);
        if (e.compressed) {
          inc(e.host, e.csize, 'compressed cluster');
          if (active) {
            s.allocated++;
            s.compressed++;
            s.fragmented++;
          }
          continue;
        }
        if (map.ext && (e.alloc & e.zero) !== 0) {
          s.corruptions++;
          s.msgs.push(`ERROR L2 entry ${j} of table ${l2off}: subcluster both allocated and zero`);
        }
        if (e.host === 0) {
          if (map.ext && e.alloc !== 0) {
            s.corruptions++;
            s.msgs.push(`ERROR L2 entry ${j} of table ${l2off}: allocated subclusters without a host cluster`);
          }
          continue;
        }
        inc(e.host, cs, 'data cluster');
        if (active) {
          s.allocated++;
          if (next && e.host !== next) s.fragmented++;
          next = e.host + cs;
          const idx = j;
          s.copiedChecks.push({
            cluster: e.host / cs,
            copied: e.copied,
            what: `data cluster at L2 ${l2off} entry ${j}`,
            fix: async () => {
              const buf = await map.cache.get(l2off);
              const cur = map.decode(buf, idx);
              map.encode(buf, idx, { ...cur, copied: !cur.copied });
              map.cache.markDirty(l2off, buf);
            },
          });
        }
      }
    }
  };

  inc(map.l1Offset, map.l1.length * 8, 'L1 table');
  await walkL1(map.l1, map.l1Copied, true);
  if (img.header.nbSnapshots > 0) inc(img.header.snapshotsOffset, img.snapshotTableBytes, 'snapshot table');
  for (const sn of img.snapshots) {
    inc(sn.l1Offset, sn.l1Size * 8, `snapshot '${sn.name}' L1 table`);
    const raw = await file.readExact(sn.l1Offset, sn.l1Size * 8, 'snapshot L1 table');
    const l1 = new Float64Array(sn.l1Size);
    for (let i = 0; i < sn.l1Size; i++) l1[i] = Number(raw.readBigUInt64BE(i * 8) & C.OFFSET_MASK);
    await walkL1(l1, null, false);
  }
  const refs = await img.loadRefcounts();
  inc(refs.tableOffset, refs.tableClusters * cs, 'refcount table');
  for (let b = 0; b < refs.table.length; b++) {
    const off = refs.table[b]!;
    if (!off) continue;
    if (off % cs !== 0 || off + cs > file.size) {
      s.corruptions++;
      s.msgs.push(`ERROR refcount block ${b} at ${off} is unaligned or past the end of the file`);
      continue;
    }
    inc(off, cs, 'refcount block');
  }
  const bm = img.header.bitmaps;
  if (bm) for (const [off, len] of await bitmapRanges(file, bm, cs)) inc(off, len, 'bitmap');
  return s;
}

async function compare(img: Qcow2Image, s: Scan, fix: 'none' | 'leaks' | 'all', msgs: string[]) {
  const refs = img.refs!;
  let corruptions = 0;
  let leaks = 0;
  let fixedC = 0;
  let fixedL = 0;
  let highest = -1;
  // Like qemu-img, only clusters inside the file are compared: a refcount past
  // EOF (allocated, never written before a crash) is not a leak anyone can see.
  const n = s.counts.length - 1;
  for (let c = 0; c < n; c++) {
    const stored = await refs.get(c);
    const calc = c < s.counts.length ? s.counts[c]! : 0;
    if (stored > 0 || calc > 0) highest = c;
    if (stored === calc) continue;
    if (stored < calc) {
      corruptions++;
      msgs.push(`ERROR cluster ${c} refcount=${stored} reference=${calc}`);
      if (fix === 'all') {
        await refs.set(c, calc);
        fixedC++;
      }
    } else {
      leaks++;
      msgs.push(`Leaked cluster ${c} refcount=${stored} reference=${calc}`);
      if (fix !== 'none') {
        await refs.set(c, calc);
        fixedL++;
      }
    }
  }
  for (const cc of s.copiedChecks) {
    const rc = await refs.get(cc.cluster);
    if ((rc === 1) !== cc.copied) {
      corruptions++;
      msgs.push(`ERROR OFLAG_COPIED ${cc.what}: refcount=${rc}`);
      if (fix === 'all') {
        await cc.fix();
        fixedC++;
      }
    }
  }
  return { corruptions, leaks, fixedC, fixedL, highest };
}

/** Check (and optionally repair) an image. The image must be open read-write to repair. */
export async function checkImage(img: Qcow2Image, opts: CheckOptions = {}): Promise<CheckResult> {
  const fix = opts.repair ?? 'none';
  if (fix !== 'none' && img.readOnly) throw err.perm('qcow2: repair needs the image open read-write');
  await img.flushLocked();
  const msgs: string[] = [];
  let s = await scan(img);
  let r = await compare(img, s, fix, msgs);
  const first = { corruptions: r.corruptions + s.corruptions, leaks: r.leaks };
  if (fix !== 'none' && (r.fixedC > 0 || r.fixedL > 0)) {
    // Repairs may create refcount blocks; settle, then report what remains.
    for (let round = 0; round < 4; round++) {
      await img.flushLocked();
      img.refs!.resetHint();
      s = await scan(img);
      r = await compare(img, s, fix, []);
      if (r.fixedC === 0 && r.fixedL === 0) break;
    }
    await img.flushLocked();
    s = await scan(img);
    r = await compare(img, s, 'none', []);
  }
  msgs.unshift(...s.msgs);
  const corruptions = r.corruptions + s.corruptions;
  return {
    corruptions,
    leaks: r.leaks,
    corruptionsFixed: Math.max(0, first.corruptions - corruptions),
    leaksFixed: Math.max(0, first.leaks - r.leaks),
    checkErrors: 0,
    totalClusters: Math.ceil(img.size / img.clusterSize),
    allocatedClusters: s.allocated,
    fragmentedClusters: s.fragmented,
    compressedClusters: s.compressed,
    imageEndOffset: (r.highest + 1) * img.clusterSize,
    messages: msgs,
  };
}
