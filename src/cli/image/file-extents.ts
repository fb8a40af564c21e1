/**
 * Where a sparse raw file has data, from lseek(SEEK_DATA / SEEK_HOLE), for
 * `convert` to skip the holes of a raw source without reading them (as
 * qemu-img does). Node has no SEEK_DATA, so, as formats/raw already runs
 * util-linux fallocate(1) for what Node lacks, this runs a five-line perl
 * script (perl-base is part of every Debian/Ubuntu system). Without perl,
 * or on any error, the answer is "unknown" and the file is read whole (its
 * zero granules are still detected and skipped).
 *
 * Only a file with fewer allocated blocks than its size can have holes, so a
 * fully allocated file costs one fstat and no process.
 */
import { stat } from 'node:fs/promises';
import { readRangesOf, type BlockDevice, type BlockDeviceInfo, type Extent, type ReadRanges, type WriteOptions, type ZeroOptions } from '../../device/block-device.js';

// SEEK_DATA = 3, SEEK_HOLE = 4 on Linux. ENXIO from SEEK_DATA means no data
// after the position; any other failure exits non-zero (the map is then unknown).
const SCRIPT = `
use Errno;
open(my $f, '<', $ARGV[0]) or exit 2;
my $end = -s $f; my $p = 0;
while ($p < $end) {
  my $d = sysseek($f, $p, 3);
  if (!defined $d) { last if $!{ENXIO}; exit 3; }
  my $h = sysseek($f, $d, 4);
  exit 3 unless defined $h;
  print(($d + 0), ' ', ($h + 0), "\\n");
  $p = $h;
}
`;

/** Data ranges [start, end) of a regular file, in order; null when unknown. */
export async function dataExtents(path: string): Promise<Array<[number, number]> | null> {
  if (process.platform !== 'linux') return null;
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) return null;
    size = st.size;
    if (st.blocks * 512 >= st.size) return [[0, size]];
  } catch {
    return null;
  }
  const out = await new Promise<string | null>((resolve) => {
    // Loaded only for files with holes: child_process costs milliseconds to load.
    import('node:child_process').then(
      ({ execFile }) => execFile('perl', ['-e', SCRIPT, path], { maxBuffer: 64 * 1024 * 1024 }, (e, stdout) => resolve(e ? null : stdout)),
      () => resolve(null),
    );
  });
  if (out === null) return null;
  const ranges: Array<[number, number]> = [];
  let last = 0;
  for (const line of out.split('\n')) {
    if (!line) continue;
    const m = /^(\d+) (\d+)$/.exec(line);
    if (!m) return null;
    const a = Number(m[1]);
    const z = Math.min(Number(m[2]), size);
    if (!Number.isSafeInteger(a) || a < last || z < a) return null;
    if (z > a) ranges.push([a, z]);
    last = z;
  }
  return ranges;
}

/**
 * A read-only view of `dev` whose blockStatus reports `data` (from
 * dataExtents) as data and everything else as holes reading as zeroes.
 * The file must not change while the view is used (convert's source).
 */
export class KnownExtents implements BlockDevice {
  constructor(
    private readonly dev: BlockDevice,
    private readonly data: Array<[number, number]>,
  ) {}

  info(): BlockDeviceInfo {
    return this.dev.info();
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.dev.read(offset, length, into);
  }

  readRanges(ranges: ReadRanges, into: Buffer): Promise<void> {
    return readRangesOf(this.dev, ranges, into);
  }

  write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    return this.dev.write(offset, data, opts);
  }

  writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    return this.dev.writeZeroes(offset, length, opts);
  }

  trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    return this.dev.trim(offset, length, opts);
  }

  flush(): Promise<void> {
    return this.dev.flush();
  }

  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    const end = offset + length;
    const out: Extent[] = [];
    let pos = offset;
    // First data range ending after `offset` (binary search: the list is sorted).
    let lo = 0;
    let hi = this.data.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.data[mid]![1] <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.data.length && pos < end; i++) {
      const [a, z] = this.data[i]!;
      if (a >= end) break;
      if (a > pos) out.push({ offset: pos, length: a - pos, hole: true, zero: true });
      const s = Math.max(a, pos);
      const e = Math.min(z, end);
      out.push({ offset: s, length: e - s, hole: false, zero: false });
      pos = e;
    }
    if (pos < end) out.push({ offset: pos, length: end - pos, hole: true, zero: true });
    return out;
  }

  close(): Promise<void> {
    return this.dev.close();
  }
}
