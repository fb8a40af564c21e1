import { describe, expect, it } from 'vitest';
import { median } from '../../bench/stats.js';

describe('bench/stats', () => {
  it('median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});
