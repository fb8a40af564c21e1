/**
 * The options of the snapshot-strategies benchmark, defined once for
 * `strata bench snapshots` (bench.ts) and bench/snapshot-strategies/run.ts:
 * strings in, SnapshotBenchOptions out (the benchmark's input; its code,
 * bench/snapshot-strategies, imports the type from here).
 */
import { tmpdir } from 'node:os';
import { parseSize } from '../pool/dataset/units.js';

export interface SnapshotBenchOptions {
  /** Size of the disks of phases 1-5. */
  size: number;
  rounds: number;
  /** Length of each time-based read job. */
  runtimeMs: number;
  /** Volume sizes of phase 6. */
  sizes: number[];
  /** Snapshot counts of phase 5. */
  depths: number[];
  /** Directory for the temporary pool, homes and images. */
  dir: string;
  /** Use this pool of the home (volumes under POOL/strata-bench-PID, destroyed afterwards) instead of a temporary pool. */
  pool?: string;
  /** The home holding `pool` (default $STRATA_HOME or ./strata-data). */
  home?: string;
  /** NBD address of the home's running daemon, if it does not listen on its configured one. */
  nbd?: string;
  /** Only these targets (names as in the tables). */
  only?: string[];
  log: (line: string) => void;
}

export interface RawOptions {
  size?: string;
  rounds?: string;
  runtime?: string;
  sizes?: string;
  depths?: string;
  dir?: string;
  pool?: string;
  nbd?: string;
  only?: string;
}

export const DEFAULTS = { size: '256M', rounds: '3', runtime: '1', sizes: '64M,256M,1G', depths: '1,10,50' } as const;

function positiveInt(name: string, s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid --${name} '${s}': expected a positive integer`);
  return n;
}

function volumeSize(name: string, s: string): number {
  const n = parseSize(s);
  if (n < 1024 * 1024 || n % (1024 * 1024) !== 0) throw new Error(`invalid --${name} '${s}': expected a whole number of MiB, at least 1M`);
  return n;
}

export function parseOptions(raw: RawOptions, home: string | undefined, log: (l: string) => void): SnapshotBenchOptions {
  const runtime = Number(raw.runtime ?? DEFAULTS.runtime);
  if (!(runtime > 0 && runtime <= 600)) throw new Error(`invalid --runtime '${raw.runtime}': seconds, more than 0`);
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const depths = list(raw.depths ?? DEFAULTS.depths).map((d) => positiveInt('depths', d));
  if (depths.some((d) => d > 200)) throw new Error('invalid --depths: at most 200 snapshots');
  return {
    size: volumeSize('size', raw.size ?? DEFAULTS.size),
    rounds: positiveInt('rounds', raw.rounds ?? DEFAULTS.rounds),
    runtimeMs: runtime * 1000,
    sizes: list(raw.sizes ?? DEFAULTS.sizes).map((s) => volumeSize('sizes', s)),
    depths,
    dir: raw.dir ?? tmpdir(),
    pool: raw.pool,
    home,
    nbd: raw.nbd,
    only: raw.only ? list(raw.only) : undefined,
    log,
  };
}
