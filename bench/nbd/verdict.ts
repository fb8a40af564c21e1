/**
 * How the NBD benchmark judges its targets (issue #4): pure functions over
 * the rounds' samples, so they can be tested without servers.
 *
 * The target is the ratio of medians over the run's rounds. One round
 * moves by ±15% on the 2-core bench machine (nbdkit's seq read by up to
 * 2x), which is more than the margin left on some jobs, so the verdict
 * also pairs each round of strata with the same round of the peer (they
 * ran back to back, alternating) and says how many rounds strata won. A
 * ratio of medians at or above 1.0 whose paired rounds split evenly is a
 * tie the next run may reverse; the report says so instead of calling it
 * met.
 */
import { median } from '../stats.js';

export interface Sample {
  mbps: number;
  iops: number;
}

/** What a target asks: `strata` at least `min` times `peer`, on every job. */
export interface Target {
  strata: string;
  peer: string;
  min: number;
}

/** The targets. */
export const TARGETS: readonly Target[] = [
  { strata: 'strata-raw', peer: 'nbdkit', min: 1.0 },
  { strata: 'strata-pool', peer: 'qemu-nbd', min: 1.0 },
];

export interface JobVerdict {
  job: string;
  /** Ratio of the medians: what the target is stated in. */
  ratio: number;
  /** Per-round ratios (strata's round k over the peer's round k), in round order. */
  paired: number[];
  /** Rounds in which strata reached `min` times the peer. */
  wins: number;
  /** met: the ratio reaches min and so do most paired rounds; missed: neither; tie: they disagree. */
  verdict: 'met' | 'missed' | 'tie';
}

/** MB/s is the measure for every job: fio's bandwidth and IOPS differ only by the block size. */
export function judgeJob(job: string, strata: readonly Sample[], peer: readonly Sample[], min: number): JobVerdict {
  const ratio = median(strata.map((s) => s.mbps)) / median(peer.map((s) => s.mbps));
  const n = Math.min(strata.length, peer.length);
  const paired: number[] = [];
  for (let k = 0; k < n; k++) paired.push(strata[k]!.mbps / peer[k]!.mbps);
  const wins = paired.filter((r) => r >= min).length;
  const most = wins * 2 > n;
  const verdict = ratio >= min && most ? 'met' : ratio < min && !most ? 'missed' : 'tie';
  return { job, ratio, paired, wins, verdict };
}

/** Every target whose two servers took part, job by job. */
export function judge(
  samples: Record<string, Record<string, readonly Sample[]>>,
  targets: readonly Target[] = TARGETS,
): { target: Target; jobs: JobVerdict[] }[] {
  const out: { target: Target; jobs: JobVerdict[] }[] = [];
  for (const t of targets) {
    const a = samples[t.strata];
    const b = samples[t.peer];
    if (!a || !b) continue;
    out.push({ target: t, jobs: Object.keys(a).filter((j) => b[j]).map((j) => judgeJob(j, a[j]!, b[j]!, t.min)) });
  }
  return out;
}

/** The verdict as report lines. */
export function verdictLines(v: ReturnType<typeof judge>): string[] {
  const lines: string[] = [];
  for (const { target, jobs } of v) {
    const met = jobs.filter((j) => j.verdict === 'met').length;
    lines.push(`target ${target.strata} >= ${target.min.toFixed(1)}x ${target.peer}: met on ${met} of ${jobs.length} jobs`);
    for (const j of jobs) {
      const lo = Math.min(...j.paired);
      const hi = Math.max(...j.paired);
      lines.push(
        `  ${j.job.padEnd(20)} ${j.ratio.toFixed(2)}x  rounds ${lo.toFixed(2)}-${hi.toFixed(2)}x, won ${j.wins} of ${j.paired.length}  ${j.verdict}`,
      );
    }
  }
  return lines;
}
