import { describe, expect, it } from 'vitest';
import { judge, judgeJob, verdictLines } from '../../bench/nbd/verdict.js';

const s = (...mbps: number[]) => mbps.map((m) => ({ mbps: m, iops: m * 256 }));

describe('bench/nbd verdict', () => {
  it('met: ratio of medians and most paired rounds reach the target', () => {
    const v = judgeJob('seq', s(110, 90, 105, 120, 101), s(100, 100, 100, 100, 100), 1.0);
    expect(v.ratio).toBeCloseTo(1.05);
    expect(v.paired.map((r) => +r.toFixed(2))).toEqual([1.1, 0.9, 1.05, 1.2, 1.01]);
    expect(v.wins).toBe(4);
    expect(v.verdict).toBe('met');
  });

  it('missed: neither reaches it', () => {
    const v = judgeJob('seq', s(80, 90, 95), s(100, 100, 100), 1.0);
    expect(v.wins).toBe(0);
    expect(v.verdict).toBe('missed');
  });

  it('tie: the median ratio and the paired rounds disagree', () => {
    // Medians equal (ratio 1.0), but strata lost three of five paired rounds.
    const v = judgeJob('seq', s(100, 90, 95, 110, 100), s(90, 100, 100, 100, 110), 1.0);
    expect(v.ratio).toBe(1);
    expect(v.wins).toBe(2);
    expect(v.verdict).toBe('tie');
  });

  it('judges only targets whose servers both ran, and prints one line per job', () => {
    const v = judge({
      'strata-raw': { a: s(100), b: s(50) },
      nbdkit: { a: s(50), b: s(100) },
      'strata-pool': { a: s(1) },
    });
    expect(v.map((t) => t.target.peer)).toEqual(['nbdkit']);
    const lines = verdictLines(v);
    expect(lines[0]).toBe('target strata-raw >= 1.0x nbdkit: met on 1 of 2 jobs');
    expect(lines[1]).toMatch(/^ {2}a +2\.00x {2}rounds 2\.00-2\.00x, won 1 of 1 {2}met$/);
    expect(lines[2]).toMatch(/0\.50x .* missed$/);
  });
});
