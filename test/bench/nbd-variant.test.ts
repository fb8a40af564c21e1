import { describe, expect, it } from 'vitest';
import { variantTarget } from '../../bench/nbd/run.js';

describe('bench/nbd --variant', () => {
  it('names a strata target again, with settings', () => {
    const t = variantTarget('raw-b=strata-raw:STRATA_SENDFILE=0,X=a=b');
    expect(t.name).toBe('raw-b');
    expect(t.base).toBe('strata-raw');
  });

  it('refuses what it cannot run, with the reason', () => {
    expect(() => variantTarget('no-equals')).toThrow(/expected NAME=BASE/);
    expect(() => variantTarget('v=qemu-nbd')).toThrow(/no strata target 'qemu-nbd'/);
    expect(() => variantTarget('v=strata-pool:novalue')).toThrow(/bad setting 'novalue'/);
    expect(() => variantTarget('v=strata-pool:dist=/nonexistent/dist')).toThrow(/does not exist/);
  });
});
