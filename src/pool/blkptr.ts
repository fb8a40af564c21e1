/**
 * Block pointers: the 128-byte on-disk reference to a block, carrying
 * everything needed to find and verify it (the Merkle tree's edge):
 *
 *   0   3 x DVA (16 bytes each): u32 vdev id, u32 asize in sectors, u64 byte offset
 *  48   u32 lsize (logical bytes), u32 psize (physical bytes as written)
 *  56   u8 compression, u8 checksum type, u8 object type, u8 level
 *  60   u32 fill (number of non-hole L0 blocks below; 1 for a data block)
 *  64   u64 birth txg
 *  72   32 bytes checksum of the physical block
 * 104   24 bytes reserved (zero)
 *
 * A hole is 128 zero bytes (birth 0). See docs/FORMAT.md.
 */
import { err } from '../errors.js';

export const BP_SIZE = 128;
export const MAX_COPIES = 3;

export interface Dva {
  vdev: number;
  offset: number;
  asize: number;
}

export const COMPRESS_IDS = ['off', 'lz4', 'zle', 'gzip-1', 'gzip-2', 'gzip-3', 'gzip-4', 'gzip-5', 'gzip-6', 'gzip-7', 'gzip-8', 'gzip-9'] as const;
export const CHECKSUM_IDS = ['fletcher4', 'sha256'] as const;
export type CompressId = (typeof COMPRESS_IDS)[number];
export type ChecksumId = (typeof CHECKSUM_IDS)[number];

export enum ObjType {
  None = 0,
  VolumeData = 1,
  Indirect = 2,
  Directory = 3,
  SpaceMap = 4,
  MosRoot = 5,
  History = 6,
  DeadList = 7,
  IntentLog = 8,
}

export interface BlockPointer {
  dvas: Dva[];
  lsize: number;
  psize: number;
  comp: CompressId;
  cksumType: ChecksumId;
  type: ObjType;
  level: number;
  fill: number;
  birth: number;
  cksum: Buffer;
}

export const SECTOR_BYTES = 512;

export function isHole(bp: BlockPointer | null | undefined): boolean {
  return !bp || bp.birth === 0;
}

const TWO32 = 4294967296;

/**
 * u64 fields as two u32 halves: no BigInt on the hot path (a BigInt per field
 * was a heap object per block pointer, and a BlockTree sync codes two per
 * data block). Offsets and txgs stay far below 2^53, where the double is
 * exact; beyond it the read rounds to nearest, as Number(BigInt) did.
 */
function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + 4) * TWO32 + buf.readUInt32LE(at);
}

function writeU64(out: Buffer, v: number, at: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`block pointer field ${v} is not a u64 this pool can hold`);
  out.writeUInt32LE(v % TWO32, at);
  out.writeUInt32LE(Math.floor(v / TWO32), at + 4);
}

export function encodeBp(bp: BlockPointer | null, out: Buffer, at: number): void {
  out.fill(0, at, at + BP_SIZE);
  if (!bp || bp.birth === 0) return;
  for (let i = 0; i < Math.min(bp.dvas.length, MAX_COPIES); i++) {
    const d = bp.dvas[i]!;
    const o = at + i * 16;
    out.writeUInt32LE(d.vdev, o);
    out.writeUInt32LE(d.asize / SECTOR_BYTES, o + 4);
    writeU64(out, d.offset, o + 8);
  }
  out.writeUInt32LE(bp.lsize, at + 48);
  out.writeUInt32LE(bp.psize, at + 52);
  out.writeUInt8(COMPRESS_IDS.indexOf(bp.comp), at + 56);
  out.writeUInt8(CHECKSUM_IDS.indexOf(bp.cksumType), at + 57);
  out.writeUInt8(bp.type, at + 58);
  out.writeUInt8(bp.level, at + 59);
  out.writeUInt32LE(bp.fill, at + 60);
  writeU64(out, bp.birth, at + 64);
  bp.cksum.copy(out, at + 72, 0, 32);
}

/**
 * Fields of the pointer encoded at buf[at..], read in place: for walks that only pass
 * through a pointer (BlockTree.getBpCached's upper levels), with no object per level.
 * A birth of 0 is a hole. bpFirstDvaAt is the byte offset of the first copy, the one
 * decodeBp makes dvas[0] (a DVA of asize 0 is an empty slot), or -1 if there is none.
 */
export const bpBirthAt = (buf: Buffer, at: number): number => readU64(buf, at + 64);
export function bpFirstDvaAt(buf: Buffer, at: number): number {
  for (let i = 0; i < MAX_COPIES; i++) if (buf.readUInt32LE(at + i * 16 + 4) !== 0) return at + i * 16;
  return -1;
}
export const dvaVdevAt = (buf: Buffer, o: number): number => buf.readUInt32LE(o);
export const dvaOffsetAt = (buf: Buffer, o: number): number => readU64(buf, o + 8);

export function decodeBp(buf: Buffer, at: number): BlockPointer | null {
  const birth = readU64(buf, at + 64);
  if (birth === 0) return null;
  const dvas: Dva[] = [];
  for (let i = 0; i < MAX_COPIES; i++) {
    const o = at + i * 16;
    const asizeSectors = buf.readUInt32LE(o + 4);
    if (asizeSectors === 0) continue;
    dvas.push({ vdev: buf.readUInt32LE(o), asize: asizeSectors * SECTOR_BYTES, offset: readU64(buf, o + 8) });
  }
  const comp = COMPRESS_IDS[buf.readUInt8(at + 56)];
  const cksumType = CHECKSUM_IDS[buf.readUInt8(at + 57)];
  if (!comp || !cksumType || dvas.length === 0) throw err.corrupt('corrupt block pointer');
  return {
    dvas,
    lsize: buf.readUInt32LE(at + 48),
    psize: buf.readUInt32LE(at + 52),
    comp,
    cksumType,
    type: buf.readUInt8(at + 58),
    level: buf.readUInt8(at + 59),
    fill: buf.readUInt32LE(at + 60),
    birth,
    cksum: Buffer.from(buf.subarray(at + 72, at + 104)),
  };
}

/** Compact JSON form used inside the MOS root and directory (hex of the 128-byte encoding). */
export function bpToHex(bp: BlockPointer | null): string | null {
  if (!bp || bp.birth === 0) return null;
  const b = Buffer.alloc(BP_SIZE);
  encodeBp(bp, b, 0);
  return b.toString('hex');
}

export function bpFromHex(s: string | null | undefined): BlockPointer | null {
  if (!s) return null;
  const b = Buffer.from(s, 'hex');
  if (b.length !== BP_SIZE) throw err.corrupt('corrupt block pointer in metadata');
  return decodeBp(b, 0);
}

export function dvaKey(d: Pick<Dva, 'vdev' | 'offset'>): string {
  return `${d.vdev}:${d.offset}`;
}

/** Total allocated bytes of a block pointer (all copies). */
export function bpAsize(bp: BlockPointer | null): number {
  if (!bp) return 0;
  let n = 0;
  for (const d of bp.dvas) n += d.asize;
  return n;
}
