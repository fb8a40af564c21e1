/** On-disk constants of qcow2 (docs/interop/qcow2.txt of qemu/qemu). */
export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

export const V2_HEADER_LENGTH = 72;
export const V3_MIN_HEADER_LENGTH = 104;
/** What we write for v3: 104 plus the compression_type byte, padded to 8. */
export const V3_HEADER_LENGTH = 112;

export const MIN_CLUSTER_BITS = 9;
/** QEMU's implementation limit (2 MiB); we accept exactly what QEMU can open. */
export const MAX_CLUSTER_BITS = 21;
export const MIN_EXTENDED_L2_CLUSTER_BITS = 14;

/** QEMU's limits, kept so a crafted header cannot make us allocate gigabytes. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
export const MAX_SNAPSHOTS = 65536;
export const MAX_BACKING_NAME = 1023;
/** Chains deeper than this are refused as a probable loop or abuse. */
export const MAX_CHAIN_DEPTH = 256;

// Incompatible feature bits.
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_SUPPORTED = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
// Compatible feature bits.
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
// Autoclear feature bits.
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

// Header extension types.
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

// L1/L2/refcount-table entry bits.
export const OFLAG_COPIED = 1n << 63n;
export const OFLAG_COMPRESSED = 1n << 62n;
export const OFLAG_ZERO = 1n;
/** Bits 9-55: host offset of a standard cluster, an L2 table or a refcount block. */
export const OFFSET_MASK = 0x00fffffffffffe00n;
/** Reserved bits that must be zero in an L1 entry (1-8 and 56-62). */
export const L1_RESERVED = 0x7f000000000001ffn;
/** Reserved bits that must be zero in a standard L2 entry (1-8, 56-61). */
export const L2_STD_RESERVED = 0x3f000000000001fen;

export const SUBCLUSTERS = 32;
export const ALL_SUBCLUSTERS = 0xffffffff;

export const FEATURE_NAMES: ReadonlyArray<{ type: 0 | 1 | 2; bit: number; name: string }> = [
  { type: 0, bit: 0, name: 'dirty bit' },
  { type: 0, bit: 1, name: 'corrupt bit' },
  { type: 0, bit: 2, name: 'external data file' },
  { type: 0, bit: 3, name: 'compression type' },
  { type: 0, bit: 4, name: 'extended L2 entries' },
  { type: 1, bit: 0, name: 'lazy refcounts' },
  { type: 2, bit: 0, name: 'bitmaps' },
  { type: 2, bit: 1, name: 'raw external data' },
];
