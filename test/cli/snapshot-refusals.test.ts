/**
 * Every snapshot refusal through the real `strata` binary: one line on
 * stderr starting with `strata: `, a non-zero exit, nothing on stdout, and
 * nothing changed (the full listing, holds, origins, clones and the
 * volume's data are the same before and after).
 */
import { rmSync, writeFileSync } from 'node:fs';
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

/** Everything a refusal must leave alone. */
function state(): string {
  return [
    ok('list', '-r', '-t', 'all', '-H', '-p', '-o', 'name,used,refer,origin,clones,userrefs,written', 'tank', 'other'),
    ok('holds', '-H', 'tank/vm@s1', 'tank/vm@s2', 'tank/vm@s3'),
    ok('diff', 'tank/vm@s1'),
  ].join('\n--\n');
}

function refused(args: string[], message: RegExp): void {
  const before = state();
  const r = strata(home, args);
  expect(r.code, `strata ${args.join(' ')} should fail; stdout ${r.stdout}`).not.toBe(0);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l.length);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^strata: /);
  expect(lines[0]).toMatch(message);
  expect(lines[0]).not.toMatch(/internal error|at .*\.js:\d+/);
  expect(state(), `strata ${args.join(' ')} changed something`).toBe(before);
}

beforeAll(() => {
  build = buildProject('snaprefuse');
  dir = tmp('strata-snaprefuse-');
  home = join(dir, 'home');
  ok('pool', 'create', '-s', '128M', 'tank', join(dir, 'd1.img'));
  ok('pool', 'create', '-s', '128M', 'other', join(dir, 'd2.img'));
  ok('create', '-s', '-V', '4M', 'tank/vm2');
  ok('create', '-s', '-V', '4M', 'other/vm');
  // Put data in: import a small raw file.
  const img = join(dir, 'a.raw');
  writeFileSync(img, Buffer.alloc(4 << 20, 7));
  ok('import', img, 'tank/vm');
  ok('snapshot', 'tank/vm@s1', 'tank/vm2@s1');
  ok('snapshot', 'other/vm@s1');
  ok('snapshot', 'tank/vm@s2');
  ok('import', img, 'tank/scratch');
  ok('snapshot', 'tank/vm@s3');
  ok('clone', 'tank/vm@s2', 'tank/c1');
  ok('hold', 'keep', 'tank/vm@s1');
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  build?.cleanup();
});

describe('snapshot refusals are one clear line and change nothing', () => {
  it('destroy a snapshot that has clones, without -R', () => refused(['destroy', 'tank/vm@s2'], /dependent clones.*tank\/c1/));
  it('destroy a range that includes a cloned snapshot', () => refused(['destroy', 'tank/vm@s2%s3'], /dependent clones/));
  it('destroy a held snapshot', () => refused(['destroy', 'tank/vm@s1'], /held/));
  it('destroy -R a held snapshot', () => refused(['destroy', '-R', 'tank/vm@s1'], /held/));
  it('destroy a volume with snapshots, without -r', () => refused(['destroy', 'tank/vm'], /has snapshots/));
  it('destroy -r a volume whose snapshots have clones', () => refused(['destroy', '-r', 'tank/vm'], /dependent clones|held/));
  it('rollback past later snapshots without -r', () => refused(['rollback', 'tank/vm@s1'], /more recent snapshots.*-r.*s2.*s3/));
  it('rollback -r past a cloned snapshot', () => refused(['rollback', '-r', 'tank/vm@s1'], /dependent clones|held/));
  it('rename a snapshot to another dataset', () => refused(['rename', 'tank/vm@s3', 'tank/vm2@s3'], /between datasets/));
  it('rename a snapshot to another pool', () => refused(['rename', 'tank/vm@s3', 'other/vm@s3'], /between (pools|datasets)/));
  it('rename a snapshot onto an existing one', () => refused(['rename', 'tank/vm@s3', 'tank/vm@s2'], /already exists/));
  it('rename a snapshot (short form) to a bad name', () => refused(['rename', 'tank/vm@s3', 'bad name'], /invalid snapshot name/));
  it('rename a volume to another pool', () => refused(['rename', 'tank/vm2', 'other/vm2'], /between pools/));
  it('clone into another pool', () => refused(['clone', 'tank/vm@s2', 'other/c2'], /same pool/));
  it('clone onto an existing name', () => refused(['clone', 'tank/vm@s2', 'tank/vm2'], /already exists/));
  it('clone of a missing snapshot', () => refused(['clone', 'tank/vm@nope', 'tank/c9'], /does not exist/));
  it('duplicate snapshot name', () => refused(['snapshot', 'tank/vm@s2'], /already exists/));
  it('duplicate within one atomic call leaves the other names untaken', () => refused(['snapshot', 'tank/vm2@new', 'tank/vm@s3'], /already exists/));
  it('snapshots in two pools in one call', () => refused(['snapshot', 'tank/vm2@x', 'other/vm@x'], /one pool/));
  for (const bad of ['tank/vm@', 'tank/vm@a b', 'tank/vm@a@b', 'tank/vm@a/b', 'tank/vm@' + 'x'.repeat(260), 'tank/vm']) {
    it(`bad snapshot name '${bad.slice(0, 20)}'`, () => refused(['snapshot', bad], /invalid|not a snapshot|DATASET@SNAP/));
  }
  it('snapshot of a missing dataset', () => refused(['snapshot', 'tank/nope@x'], /does not exist/));
  it('hold a tag twice', () => refused(['hold', 'keep', 'tank/vm@s1'], /already exists/));
  it('release a tag that is not there', () => refused(['release', 'nope', 'tank/vm@s1'], /no such tag/));
  it('promote a volume that is not a clone', () => refused(['promote', 'tank/vm'], /not a cloned volume/));
  it('diff of snapshots of different volumes', () => refused(['diff', 'tank/vm@s1', 'tank/vm2@s1'], /not snapshots of the same dataset/));
});
