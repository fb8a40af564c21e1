/**
 * ZeroMap: what this process knows about which parts of a raw file read as
 * zeroes and which are deallocated, at GRAIN granularity.
 *
 * Node cannot ask the kernel (no SEEK_DATA/SEEK_HOLE, no FIEMAP), so the
 * map is built from facts we can establish without native code:
 * - a file with st_blocks == 0 (fresh `RawDevice.create`, `truncate -s`)
 *   has no data anywhere: every grain starts as hole + zero;
 * - after a successful punch-hole (trim, or write zeroes that may trim)
 *   the fully covered grains are hole + zero;
 * - after a zero-range (write zeroes with NO_HOLE) they are zero;
 * - any write makes every grain it touches data again, *before* the write
 *   is issued, so block status never claims zero for data in flight.
 * Everything else is reported as data, which is always a correct answer.
 * The map assumes this process is the only writer of the file while open.
 */
export const GRAIN = 64 * 1024;

export class ZeroMap {
  private readonly zero: Uint8Array;
  private readonly hole: Uint8Array;
  private readonly grains: number;
  /** Grains with the zero bit set: lets markData() skip work on fully written files. */
  private zeroCount = 0;

  constructor(
    private readonly size: number,
    allZero: boolean,
  ) {
    this.grains = Math.ceil(size / GRAIN);
    const bytes = Math.ceil(this.grains / 8);
    this.zero = new Uint8Array(bytes);
    this.hole = new Uint8Array(bytes);
    if (allZero) {
      // Every grain zero and a hole: whole bytes, then the bits of the last one.
      const full = this.grains >> 3;
      this.zero.fill(0xff, 0, full);
      this.hole.fill(0xff, 0, full);
      const rest = this.grains & 7;
      if (rest) this.zero[full] = this.hole[full] = (1 << rest) - 1;
      this.zeroCount = this.grains;
    }
  }

  private get(map: Uint8Array, g: number): boolean {
    return (map[g >> 3]! & (1 << (g & 7))) !== 0;
  }

  private set(g: number, zero: boolean, hole: boolean): void {
    const i = g >> 3;
    const bit = 1 << (g & 7);
    const was = (this.zero[i]! & bit) !== 0;
    if (zero && !was) this.zeroCount++;
    if (!zero && was) this.zeroCount--;
    this.zero[i] = zero ? this.zero[i]! | bit : this.zero[i]! & ~bit;
    this.hole[i] = hole ? this.hole[i]! | bit : this.hole[i]! & ~bit;
  }

  /** Bytes [offset, offset+length) are about to hold data. */
  markData(offset: number, length: number): void {
    if (this.zeroCount === 0 || length === 0) return;
    const first = Math.floor(offset / GRAIN);
    const last = Math.floor((offset + length - 1) / GRAIN);
    for (let g = first; g <= last; g++) if (this.get(this.zero, g) || this.get(this.hole, g)) this.set(g, false, false);
  }

  /** Bytes [offset, offset+length) now read as zeroes (and are deallocated if `hole`). */
  markZero(offset: number, length: number, hole: boolean): void {
    const end = offset + length;
    const first = Math.ceil(offset / GRAIN);
    // A grain is covered if the range reaches its end, or the end of the file for the last grain.
    const last = (end >= this.size ? this.grains : Math.floor(end / GRAIN)) - 1;
    for (let g = first; g <= last; g++) this.set(g, true, hole);
  }

  /** Runs of equal state covering [offset, offset+length), in order. */
  extents(offset: number, length: number): { offset: number; length: number; hole: boolean; zero: boolean }[] {
    const out: { offset: number; length: number; hole: boolean; zero: boolean }[] = [];
    const end = offset + length;
    if (this.zeroCount === 0) return [{ offset, length, hole: false, zero: false }];
    let pos = offset;
    while (pos < end) {
      const g = Math.floor(pos / GRAIN);
      const next = Math.min((g + 1) * GRAIN, end);
      const zero = this.get(this.zero, g);
      const hole = zero && this.get(this.hole, g);
      const last = out[out.length - 1];
      if (last && last.zero === zero && last.hole === hole) last.length += next - pos;
      else out.push({ offset: pos, length: next - pos, hole, zero });
      pos = next;
    }
    return out;
  }
}
