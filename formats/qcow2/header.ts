/**
 * Header and header-extension codec. parseHeader() validates everything that
 * can be validated without reading further than the first cluster, so a
 * crafted image is refused before any table is allocated from its fields.
 */
import { err } from '../../src/errors.js';
import * as C from './constants.js';

export interface FeatureName {
  type: number;
  bit: number;
  name: string;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  directorySize: number;
  directoryOffset: number;
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Header bytes past the fields we know (kept verbatim on rewrite). */
  extraHeader: Buffer;
  backingFile: string | null;
  backingFormat: string | null;
  featureNames: FeatureName[];
  bitmaps: BitmapsExtension | null;
  dataFile: string | null;
  /** Extensions we do not interpret, kept verbatim on rewrite. */
  unknownExtensions: Array<{ type: number; data: Buffer }>;
}

function u64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw err.corrupt(`qcow2: ${what} ${v} is absurdly large`);
  return Number(v);
}

function featureList(h: Pick<Qcow2Header, 'featureNames'>, type: number, bits: bigint): string {
  const names: string[] = [];
  for (let b = 0; b < 64; b++) {
    if (!(bits & (1n << BigInt(b)))) continue;
    const n = h.featureNames.find((f) => f.type === type && f.bit === b)?.name;
    names.push(n ? `'${n}'` : `bit ${b}`);
  }
  return names.join(', ');
}

/**
 * Parse and validate the first cluster of an image. `fileSize` bounds every
 * table the header points at (a table past the end of the file is corrupt).
 */
export function parseHeader(first: Buffer, fileSize: number): Qcow2Header {
  if (first.length < C.V2_HEADER_LENGTH || first.readUInt32BE(0) !== C.QCOW2_MAGIC) {
    throw err.corrupt('not a qcow2 image (bad magic)');
  }
  const version = first.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw err.notsup(`qcow2 version ${version} is not supported`);
  const clusterBits = first.readUInt32BE(20);
  if (clusterBits < C.MIN_CLUSTER_BITS || clusterBits > C.MAX_CLUSTER_BITS) {
    throw err.corrupt(`qcow2: cluster_bits ${clusterBits} out of range (9..21)`);
  }
  const cs = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(first, 8, 'backing_file_offset'),
    backingFileSize: first.readUInt32BE(16),
    clusterBits,
    size: u64(first, 24, 'virtual size'),
    cryptMethod: first.readUInt32BE(32),
    l1Size: first.readUInt32BE(36),
    l1TableOffset: u64(first, 40, 'l1_table_offset'),
    refcountTableOffset: u64(first, 48, 'refcount_table_offset'),
    refcountTableClusters: first.readUInt32BE(56),
    nbSnapshots: first.readUInt32BE(60),
    snapshotsOffset: u64(first, 64, 'snapshots_offset'),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: C.V2_HEADER_LENGTH,
    compressionType: 0,
    extraHeader: Buffer.alloc(0),
    backingFile: null,
    backingFormat: null,
    featureNames: [],
    bitmaps: null,
    dataFile: null,
    unknownExtensions: [],
  };
  if (version === 3) {
    if (first.length < C.V3_MIN_HEADER_LENGTH) throw err.corrupt('qcow2: truncated header');
    h.incompatible = first.readBigUInt64BE(72);
    h.compatible = first.readBigUInt64BE(80);
    h.autoclear = first.readBigUInt64BE(88);
    h.refcountOrder = first.readUInt32BE(96);
    h.headerLength = first.readUInt32BE(100);
    if (h.headerLength < C.V3_MIN_HEADER_LENGTH || h.headerLength % 8 !== 0 || h.headerLength > cs) {
      throw err.corrupt(`qcow2: invalid header_length ${h.headerLength}`);
    }
    if (h.headerLength > 104) h.compressionType = first[104]!;
    if (h.headerLength > 105) h.extraHeader = Buffer.from(first.subarray(105, h.headerLength));
  }
  if (h.refcountOrder > 6) throw err.corrupt(`qcow2: refcount_order ${h.refcountOrder} exceeds 6`);
  parseExtensions(first, h, cs);

  if (h.incompatible & ~C.INCOMPAT_SUPPORTED) {
    throw err.notsup(`qcow2: unsupported incompatible feature(s): ${featureList(h, 0, h.incompatible & ~C.INCOMPAT_SUPPORTED)}`);
  }
  if (h.incompatible & C.INCOMPAT_DATA_FILE || h.dataFile !== null) throw err.notsup('qcow2: external data files are not supported');
  if (h.cryptMethod !== 0) throw err.notsup('qcow2: encrypted images are not supported');
  if (!!(h.incompatible & C.INCOMPAT_COMPRESSION) !== (h.compressionType !== 0)) {
    throw err.corrupt('qcow2: compression_type does not match the compression type feature bit');
  }
  if (h.compressionType > C.COMPRESSION_ZSTD) throw err.notsup(`qcow2: unknown compression type ${h.compressionType}`);
  if (h.incompatible & C.INCOMPAT_EXTL2 && clusterBits < C.MIN_EXTENDED_L2_CLUSTER_BITS) {
    throw err.corrupt('qcow2: extended L2 entries need clusters of at least 16 KiB');
  }
  validateLayout(h, cs, fileSize);
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize > C.MAX_BACKING_NAME || h.backingFileOffset + h.backingFileSize > Math.min(cs, first.length)) {
      throw err.corrupt('qcow2: backing file name is too long or outside the header cluster');
    }
    h.backingFile = first.toString('utf8', h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
  }
  return h;
}

function validateLayout(h: Qcow2Header, cs: number, fileSize: number): void {
  const aligned = (o: number) => o % cs === 0;
  const l2Entries = cs / (h.incompatible & C.INCOMPAT_EXTL2 ? 16 : 8);
  const needL1 = Math.ceil(h.size / cs / l2Entries);
  if (h.l1Size * 8 > C.MAX_L1_BYTES) throw err.corrupt(`qcow2: L1 table of ${h.l1Size} entries is too large`);
  if (h.l1Size < needL1) throw err.corrupt(`qcow2: L1 table (${h.l1Size} entries) too small for virtual size ${h.size}`);
  if (h.l1Size > 0) {
    if (!aligned(h.l1TableOffset) || h.l1TableOffset === 0) throw err.corrupt('qcow2: L1 table offset is invalid');
    if (h.l1TableOffset + h.l1Size * 8 > fileSize) throw err.corrupt('qcow2: L1 table is past the end of the file');
  }
  if (h.refcountTableClusters * cs > C.MAX_REFTABLE_BYTES || h.refcountTableClusters === 0) {
    throw err.corrupt(`qcow2: refcount table of ${h.refcountTableClusters} clusters is invalid`);
  }
  if (!aligned(h.refcountTableOffset) || h.refcountTableOffset === 0) throw err.corrupt('qcow2: refcount table offset is invalid');
  if (h.refcountTableOffset + h.refcountTableClusters * cs > fileSize) {
    throw err.corrupt('qcow2: refcount table is past the end of the file');
  }
  if (h.nbSnapshots > C.MAX_SNAPSHOTS) throw err.corrupt(`qcow2: ${h.nbSnapshots} snapshots is too many`);
  if (h.nbSnapshots > 0 && (!aligned(h.snapshotsOffset) || h.snapshotsOffset >= fileSize)) {
    throw err.corrupt('qcow2: snapshot table offset is invalid or past the end of the file');
  }
}

function parseExtensions(first: Buffer, h: Qcow2Header, cs: number): void {
  let off = h.headerLength;
  const end = Math.min(cs, first.length, h.backingFileOffset > 0 ? h.backingFileOffset : cs);
  const seen = new Set<number>();
  while (off + 8 <= end) {
    const type = first.readUInt32BE(off);
    const len = first.readUInt32BE(off + 4);
    if (type === C.EXT_END) return;
    if (off + 8 + len > end) throw err.corrupt(`qcow2: header extension 0x${type.toString(16)} overruns the header cluster`);
    if (seen.has(type) && type !== 0) throw err.corrupt(`qcow2: duplicate header extension 0x${type.toString(16)}`);
    seen.add(type);
    const data = first.subarray(off + 8, off + 8 + len);
    switch (type) {
      case C.EXT_BACKING_FORMAT:
        h.backingFormat = data.toString('utf8');
        break;
      case C.EXT_FEATURE_TABLE:
        for (let i = 0; i + 48 <= len; i += 48) {
          const raw = data.subarray(i + 2, i + 48);
          const nul = raw.indexOf(0);
          h.featureNames.push({ type: data[i]!, bit: data[i + 1]!, name: raw.toString('utf8', 0, nul < 0 ? 46 : nul) });
        }
        break;
      case C.EXT_BITMAPS:
        if (len < 24) throw err.corrupt('qcow2: bitmaps extension too short');
        h.bitmaps = {
          nbBitmaps: data.readUInt32BE(0),
          directorySize: u64(data, 8, 'bitmap directory size'),
          directoryOffset: u64(data, 16, 'bitmap directory offset'),
        };
        break;
      case C.EXT_DATA_FILE:
        h.dataFile = data.toString('utf8');
        break;
      case C.EXT_CRYPTO:
        throw err.notsup('qcow2: encrypted images are not supported');
      default:
        h.unknownExtensions.push({ type, data: Buffer.from(data) });
    }
    off += 8 + Math.ceil(len / 8) * 8;
  }
}

/** Our own feature name table: every feature we know, so other tools can name them. */
function featureTable(): Buffer {
  const b = Buffer.alloc(48 * C.FEATURE_NAMES.length);
  C.FEATURE_NAMES.forEach((f, i) => {
    b[i * 48] = f.type;
    b[i * 48 + 1] = f.bit;
    b.write(f.name, i * 48 + 2, 46, 'utf8');
  });
  return b;
}

/**
 * Encode the whole header cluster: fields, extensions (backing format, feature
 * names, bitmaps, unknown ones verbatim), then the backing file name. Fails
 * with EINVAL when it does not fit in one cluster.
 */
export function encodeHeader(h: Qcow2Header): Buffer {
  const cs = 2 ** h.clusterBits;
  const b = Buffer.alloc(cs);
  b.writeUInt32BE(C.QCOW2_MAGIC, 0);
  b.writeUInt32BE(h.version, 4);
  b.writeUInt32BE(h.clusterBits, 20);
  b.writeBigUInt64BE(BigInt(h.size), 24);
  b.writeUInt32BE(h.cryptMethod, 32);
  b.writeUInt32BE(h.l1Size, 36);
  b.writeBigUInt64BE(BigInt(h.l1TableOffset), 40);
  b.writeBigUInt64BE(BigInt(h.refcountTableOffset), 48);
  b.writeUInt32BE(h.refcountTableClusters, 56);
  b.writeUInt32BE(h.nbSnapshots, 60);
  b.writeBigUInt64BE(BigInt(h.snapshotsOffset), 64);
  let off = C.V2_HEADER_LENGTH;
  if (h.version === 3) {
    b.writeBigUInt64BE(h.incompatible, 72);
    b.writeBigUInt64BE(h.compatible, 80);
    b.writeBigUInt64BE(h.autoclear, 88);
    b.writeUInt32BE(h.refcountOrder, 96);
    b.writeUInt32BE(h.headerLength, 100);
    if (h.headerLength > 104) b[104] = h.compressionType;
    h.extraHeader.copy(b, 105, 0, Math.max(0, h.headerLength - 105));
    off = h.headerLength;
  }
  const exts: Array<{ type: number; data: Buffer }> = [];
  if (h.backingFormat !== null && h.backingFile !== null) exts.push({ type: C.EXT_BACKING_FORMAT, data: Buffer.from(h.backingFormat) });
  if (h.version === 3) exts.push({ type: C.EXT_FEATURE_TABLE, data: featureTable() });
  if (h.bitmaps) {
    const d = Buffer.alloc(24);
    d.writeUInt32BE(h.bitmaps.nbBitmaps, 0);
    d.writeBigUInt64BE(BigInt(h.bitmaps.directorySize), 8);
    d.writeBigUInt64BE(BigInt(h.bitmaps.directoryOffset), 16);
    exts.push({ type: C.EXT_BITMAPS, data: d });
  }
  exts.push(...h.unknownExtensions);
  for (const e of exts) {
    const padded = Math.ceil(e.data.length / 8) * 8;
    if (off + 8 + padded + 8 > cs) throw err.inval('qcow2: header extensions do not fit in the first cluster');
    b.writeUInt32BE(e.type, off);
    b.writeUInt32BE(e.data.length, off + 4);
    e.data.copy(b, off + 8);
    off += 8 + padded;
  }
  off += 8; // end-of-extensions marker (zeroes)
  if (h.backingFile !== null) {
    const name = Buffer.from(h.backingFile, 'utf8');
    if (name.length > C.MAX_BACKING_NAME || off + name.length > cs) throw err.inval('qcow2: backing file name is too long');
    name.copy(b, off);
    b.writeBigUInt64BE(BigInt(off), 8);
    b.writeUInt32BE(name.length, 16);
    h.backingFileOffset = off;
    h.backingFileSize = name.length;
  } else {
    h.backingFileOffset = 0;
    h.backingFileSize = 0;
  }
  return b;
}

/** Short name of the compat level as qemu-img prints it. */
export function compatName(h: Qcow2Header): string {
  return h.version === 2 ? '0.10' : '1.1';
}
