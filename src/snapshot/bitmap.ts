/** A fixed-size bit set over block ids (presence of a block in a cow store or row layer). */
export class Bitmap {
  private bits: Uint8Array;

  constructor(readonly size: number) {
    this.bits = new Uint8Array(Math.ceil(size / 8));
  }

  get(b: number): boolean {
    return b < this.size && (this.bits[b >> 3]! & (1 << (b & 7))) !== 0;
  }

  set(b: number): void {
    if (b < this.size) this.bits[b >> 3]! |= 1 << (b & 7);
  }

  clear(b: number): void {
    if (b < this.size) this.bits[b >> 3]! &= ~(1 << (b & 7));
  }

  /** Set bits in ascending order. */
  *ones(from = 0, to = this.size): Generator<number> {
    for (let byte = from >> 3; byte < this.bits.length && byte * 8 < to; byte++) {
      const v = this.bits[byte]!;
      if (v === 0) continue;
      for (let i = 0; i < 8; i++) {
        const b = byte * 8 + i;
        if (b >= from && b < to && v & (1 << i)) yield b;
      }
    }
  }

  count(): number {
    let n = 0;
    for (const v of this.bits) {
      let x = v;
      while (x) {
        x &= x - 1;
        n++;
      }
    }
    return n;
  }
}
