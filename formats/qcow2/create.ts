/**
 * Create a new qcow2 image. Layout: header cluster, refcount table, refcount
 * blocks covering all of that, L1 table. Every structure is written and
 * synced before the header that points at it (the header goes last), so a
 * crash during create leaves a file that is not a qcow2 image, never a
 * half-valid one.
 */
import { err } from '../../src/errors.js';
import * as C from './constants.js';
import { encodeHeader, type Qcow2Header } from './header.js';
import { Qcow2Image } from './image.js';
import { ImageFile } from './io.js';

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

export interface Qcow2CreateOptions {
  size: number;
  clusterSize?: number;
  /** '0.10' (v2) or '1.1' (v3, default). */
  compat?: '0.10' | '1.1';
  refcountBits?: number;
  extendedL2?: boolean;
  compressionType?: 'zlib' | 'zstd';
  lazyRefcounts?: boolean;
  preallocation?: Preallocation;
  backingFile?: string;
  backingFormat?: string;
}

function log2(n: number): number {
  const b = Math.log2(n);
  return Number.isInteger(b) ? b : -1;
}

export function validateCreateOptions(o: Qcow2CreateOptions): Required<Omit<Qcow2CreateOptions, 'backingFile' | 'backingFormat'>> {
  const cs = o.clusterSize ?? 65536;
  const cb = log2(cs);
  if (cb < C.MIN_CLUSTER_BITS || cb > C.MAX_CLUSTER_BITS) throw err.inval(`cluster size must be a power of two between 512 and 2M, not ${cs}`);
  const compat = o.compat ?? '1.1';
  const v3 = compat === '1.1';
  const rb = o.refcountBits ?? 16;
  const order = log2(rb);
  if (order < 0 || order > 6) throw err.inval(`refcount_bits must be a power of two between 1 and 64, not ${rb}`);
  if (!v3 && rb !== 16) throw err.inval('refcount_bits other than 16 needs compat=1.1');
  if (o.extendedL2 && (!v3 || cb < C.MIN_EXTENDED_L2_CLUSTER_BITS)) throw err.inval('extended_l2 needs compat=1.1 and clusters of at least 16k');
  if (o.compressionType === 'zstd' && !v3) throw err.inval('compression_type=zstd needs compat=1.1');
  if (o.lazyRefcounts && !v3) throw err.inval('lazy_refcounts needs compat=1.1');
  if (!Number.isSafeInteger(o.size) || o.size < 0) throw err.inval(`invalid image size ${o.size}`);
  if (o.backingFile && (o.preallocation ?? 'off') !== 'off') throw err.inval('preallocation with a backing file is not supported');
  return {
    size: Math.ceil(o.size / 512) * 512,
    clusterSize: cs,
    compat,
    refcountBits: rb,
    extendedL2: o.extendedL2 ?? false,
    compressionType: o.compressionType ?? 'zlib',
    lazyRefcounts: o.lazyRefcounts ?? false,
    preallocation: o.preallocation ?? 'off',
  };
}

export async function createQcow2(path: string, opts: Qcow2CreateOptions): Promise<void> {
  const o = validateCreateOptions(opts);
  const cs = o.clusterSize;
  const cb = log2(cs);
  const order = log2(o.refcountBits);
  const epb = (cs * 8) / o.refcountBits;
  const l2Entries = cs / (o.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(o.size / cs / l2Entries);
  if (l1Size * 8 > C.MAX_L1_BYTES) throw err.inval('image too large for this cluster size');
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs));
  // Fixed point: refcount blocks must cover header + table + blocks + L1.
  let blocks = 1;
  let tClusters = 1;
  for (;;) {
    const total = 1 + tClusters + blocks + l1Clusters;
    const nb = Math.ceil(total / epb);
    const nt = Math.ceil((nb * 8) / cs);
    if (nb === blocks && nt === tClusters) break;
    blocks = nb;
    tClusters = nt;
  }
  const tableOff = cs;
  const blocksOff = tableOff + tClusters * cs;
  const l1Off = blocksOff + blocks * cs;
  const used = 1 + tClusters + blocks + l1Clusters;

  const file = await ImageFile.create(path);
  try {
    const table = Buffer.alloc(tClusters * cs);
    for (let b = 0; b < blocks; b++) table.writeBigUInt64BE(BigInt(blocksOff + b * cs), b * 8);
    const rb = Buffer.alloc(blocks * cs);
    for (let c = 0; c < used; c++) {
      // refcount 1 in whatever width: set the lowest bit of the entry.
      const bitPos = c * o.refcountBits + (o.refcountBits >= 8 ? o.refcountBits - 1 : 0);
      const byte = o.refcountBits >= 8 ? Math.floor((c * o.refcountBits) / 8) + o.refcountBits / 8 - 1 : bitPos >> 3;
      rb[byte]! |= o.refcountBits >= 8 ? 1 : 1 << (bitPos & 7);
    }
    await file.write(tableOff, table);
    await file.write(blocksOff, rb);
    await file.write(l1Off, Buffer.alloc(l1Clusters * cs));
    await file.sync();
    const v3 = o.compat === '1.1';
    const h: Qcow2Header = {
      version: v3 ? 3 : 2,
      backingFileOffset: 0,
      backingFileSize: 0,
      clusterBits: cb,
      size: o.size,
      cryptMethod: 0,
      l1Size,
      l1TableOffset: l1Off,
      refcountTableOffset: tableOff,
      refcountTableClusters: tClusters,
      nbSnapshots: 0,
      snapshotsOffset: 0,
      incompatible: (o.compressionType === 'zstd' ? C.INCOMPAT_COMPRESSION : 0n) | (o.extendedL2 ? C.INCOMPAT_EXTL2 : 0n),
      compatible: o.lazyRefcounts ? C.COMPAT_LAZY_REFCOUNTS : 0n,
      autoclear: 0n,
      refcountOrder: order,
      headerLength: v3 ? C.V3_HEADER_LENGTH : C.V2_HEADER_LENGTH,
      compressionType: o.compressionType === 'zstd' ? C.COMPRESSION_ZSTD : C.COMPRESSION_ZLIB,
      extraHeader: Buffer.alloc(0),
      backingFile: opts.backingFile ?? null,
      backingFormat: opts.backingFile ? (opts.backingFormat ?? null) : null,
      featureNames: [],
      bitmaps: null,
      dataFile: null,
      unknownExtensions: [],
    };
    // The header is written last: only now does the file become an image.
    await file.write(0, encodeHeader(h));
    if (file.size < used * cs) await file.truncate(used * cs);
    await file.sync();
  } finally {
    await file.close();
  }
  if (o.preallocation !== 'off') await preallocate(path, o.preallocation);
}

/** Allocate every cluster (metadata: mapping only; falloc/full: the file is grown and, for full, zeroed). */
async function preallocate(path: string, mode: Preallocation): Promise<void> {
  const img = await Qcow2Image.open(path);
  try {
    await img.exclusive(async () => {
      const refs = await img.loadRefcounts();
      const map = img.map;
      const cs = map.cs;
      for (let l1i = 0; l1i < map.l1.length; l1i++) {
        const { buf, off } = await map.l2ForWrite(l1i, refs);
        const first = l1i * map.l2Entries;
        const n = Math.min(map.l2Entries, Math.ceil(img.size / cs) - first);
        const host = await refs.allocate(n);
        for (let k = 0; k < n; k++) {
          map.encode(buf, k, {
            host: host + k * cs,
            copied: true,
            compressed: false,
            // Normal data clusters: the file is extended (or zeroed) below, so they read as zeroes.
            zeroFlag: false,
            alloc: map.ext ? C.ALL_SUBCLUSTERS : 0,
            zero: 0,
            csize: 0,
          });
        }
        map.cache.markDirty(off, buf);
        if (mode === 'full') await img.file.write(host, Buffer.alloc(n * cs));
        else if (img.file.size < host + n * cs) await img.file.truncate(host + n * cs);
      }
      await img.flushLocked();
    });
  } finally {
    await img.close();
  }
}
