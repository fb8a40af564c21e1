/**
 * `strata snapshot --auto` (cron) through the real binary: the policy
 * property is validated and inherited, a run takes the due snapshots
 * (named after the UTC period) and a second run in the same period takes
 * nothing; a bad policy is one line on stderr.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { tmp } from '../helpers/cli.js';
import { buildProject } from '../formats/qcow2/helpers.js';

// A private build: other suites rebuilding dist/ meanwhile cannot break these runs.
let build: ReturnType<typeof buildProject>;
function strata(home: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [build.cli, '--home', home, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
let home: string;
const ok = (...args: string[]): string => {
  const r = strata(home, args);
  if (r.code !== 0) throw new Error(`strata ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
};

beforeAll(() => {
  build = buildProject('snapauto');
  dir = tmp('strata-snapauto-');
  home = join(dir, 'home');
  ok('pool', 'create', '-s', '128M', 'tank', join(dir, 'd1.img'));
  ok('create', 'tank/vms');
  ok('create', '-s', '-V', '4M', 'tank/vms/web');
  ok('create', '-s', '-V', '4M', 'tank/scratch');
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  build?.cleanup();
});

describe('strata snapshot --auto', () => {
  it('refuses a bad policy with one line and accepts a good one (normalized, inherited)', () => {
    const bad = strata(home, ['set', 'snapshot:policy=hourly=24,yearly=3', 'tank/vms']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^strata: invalid snapshot policy .*unknown generation 'yearly'/);
    ok('set', 'snapshot:policy=weekly=4,hourly=24', 'tank/vms');
    const got = ok('get', '-H', '-o', 'name,value,source', 'snapshot:policy', 'tank/vms/web');
    expect(got.trim()).toBe('tank/vms/web\thourly=24,weekly=4\tinherited from tank/vms');
  });

  it('takes the due snapshots once per period, only under the policy', () => {
    const dry = ok('snapshot', '--auto', '-n');
    expect(dry).toMatch(/^would snapshot tank\/vms@auto-hourly-\d{4}-\d\d-\d\d-\d\d00$/m);
    expect(ok('list', '-t', 'snapshot', '-H', '-o', 'name')).toBe('');
    const out = ok('snapshot', '--auto', '-v');
    const taken = out.trim().split('\n').sort();
    expect(taken).toHaveLength(4); // hourly + weekly, for tank/vms and tank/vms/web
    for (const l of taken) expect(l).toMatch(/^snapshot tank\/vms(\/web)?@auto-(hourly|weekly)-\d{4}-\d\d-\d\d-\d{4}$/);
    const listed = ok('list', '-t', 'snapshot', '-H', '-o', 'name').trim().split('\n');
    expect(listed).toHaveLength(4);
    expect(listed.some((n) => n.startsWith('tank/scratch@'))).toBe(false);
    // Same period: nothing more (unless the hour turned meanwhile: then exactly the new hourly ones).
    const again = ok('snapshot', '--auto', '-v').trim();
    if (again) for (const l of again.split('\n')) expect(l).toMatch(/auto-hourly-|^destroy /);
    expect(strata(home, ['snapshot', '--auto', 'tank/vms@x']).stderr).toMatch(/^strata: snapshot --auto takes dataset names/);
  });
});
