import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BP_SIZE, CHECKSUM_IDS, COMPRESS_IDS, decodeBp, encodeBp, ObjType, type BlockPointer } from '../../src/pool/blkptr.js';

/** The layout written out field by field with BigInt, as docs/FORMAT.md gives it: the reference. */
function referenceEncode(bp: BlockPointer): Buffer {
  const out = Buffer.alloc(BP_SIZE);
  bp.dvas.forEach((d, i) => {
    out.writeUInt32LE(d.vdev, i * 16);
    out.writeUInt32LE(d.asize / 512, i * 16 + 4);
    out.writeBigUInt64LE(BigInt(d.offset), i * 16 + 8);
  });
  out.writeUInt32LE(bp.lsize, 48);
  out.writeUInt32LE(bp.psize, 52);
  out[56] = COMPRESS_IDS.indexOf(bp.comp);
  out[57] = CHECKSUM_IDS.indexOf(bp.cksumType);
  out[58] = bp.type;
  out[59] = bp.level;
  out.writeUInt32LE(bp.fill, 60);
  out.writeBigUInt64LE(BigInt(bp.birth), 64);
  bp.cksum.copy(out, 72);
  return out;
}

const arbBp: fc.Arbitrary<BlockPointer> = fc.record({
  dvas: fc.array(
    fc.record({
      vdev: fc.integer({ min: 0, max: 0xffff }),
      // offsets across the 32-bit boundary and up to 2^53 - 1
      offset: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
      asize: fc.integer({ min: 1, max: 1 << 15 }).map((s) => s * 512),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  lsize: fc.integer({ min: 512, max: 16 << 20 }),
  psize: fc.integer({ min: 512, max: 16 << 20 }),
  comp: fc.constantFrom(...COMPRESS_IDS),
  cksumType: fc.constantFrom(...CHECKSUM_IDS),
  type: fc.constantFrom(ObjType.VolumeData, ObjType.Indirect, ObjType.SpaceMap),
  level: fc.integer({ min: 0, max: 6 }),
  fill: fc.integer({ min: 0, max: 0xffffffff }),
  birth: fc.oneof(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
  cksum: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a)),
});

describe('block pointer codec', () => {
  it('writes the documented layout and reads back what it wrote', () => {
    fc.assert(
      fc.property(arbBp, fc.integer({ min: 0, max: 3 }), (bp, slot) => {
        const buf = Buffer.alloc(4 * BP_SIZE, 0xee);
        encodeBp(bp, buf, slot * BP_SIZE);
        expect(buf.subarray(slot * BP_SIZE, (slot + 1) * BP_SIZE).equals(referenceEncode(bp))).toBe(true);
        expect(decodeBp(buf, slot * BP_SIZE)).toEqual(bp);
      }),
      { numRuns: 500 },
    );
  });

  it('a hole is 128 zero bytes and decodes to null', () => {
    const buf = Buffer.alloc(BP_SIZE, 0xff);
    encodeBp(null, buf, 0);
    expect(buf.equals(Buffer.alloc(BP_SIZE))).toBe(true);
    expect(decodeBp(buf, 0)).toBeNull();
  });

  it('refuses values no u64 field of this pool can hold', () => {
    const bp: BlockPointer = {
      dvas: [{ vdev: 0, offset: 4096, asize: 4096 }], lsize: 4096, psize: 4096, comp: 'off', cksumType: 'fletcher4',
      type: ObjType.VolumeData, level: 0, fill: 1, birth: 5, cksum: Buffer.alloc(32),
    };
    const buf = Buffer.alloc(BP_SIZE);
    expect(() => encodeBp({ ...bp, dvas: [{ ...bp.dvas[0]!, offset: 1.5 }] }, buf, 0)).toThrow(RangeError);
    expect(() => encodeBp({ ...bp, birth: 2 ** 60 }, buf, 0)).toThrow(RangeError);
    expect(() => encodeBp({ ...bp, dvas: [{ ...bp.dvas[0]!, offset: -4096 }] }, buf, 0)).toThrow(RangeError);
  });

  it('reads offsets past 2^53 as Number(BigInt) did (rounded, never wrapped)', () => {
    const buf = Buffer.alloc(BP_SIZE);
    referenceEncode({
      dvas: [{ vdev: 0, offset: 0, asize: 512 }], lsize: 512, psize: 512, comp: 'off', cksumType: 'fletcher4',
      type: ObjType.VolumeData, level: 0, fill: 1, birth: 1, cksum: Buffer.alloc(32),
    }).copy(buf);
    const big = (1n << 60n) + 12345n;
    buf.writeBigUInt64LE(big, 8);
    expect(decodeBp(buf, 0)!.dvas[0]!.offset).toBe(Number(big));
  });
});
