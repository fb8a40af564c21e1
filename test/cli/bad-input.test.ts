/**
 * Bad input through the real `strata` binary: every mistake gets exactly one
 * line on stderr starting with "strata: ", a non-zero exit, no stack trace,
 * and changes nothing (the pool and dataset listings are identical after).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ensureBuilt } from '../pool/engine/build.js';

let dir: string;
let home: string;

function strata(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, '--home', home, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(...args: string[]): string {
  const r = strata(...args);
  expect(r.stderr, `strata ${args.join(' ')}`).toBe('');
  expect(r.code, `strata ${args.join(' ')}`).toBe(0);
  return r.stdout;
}

/** What must not change: the datasets (names, types, sizes, properties) of every imported pool. */
function state(): string {
  return ok('list', '-H', '-p', '-o', 'name,type,volsize,compression,copies,volblocksize,refreservation');
}

function expectRefused(args: string[], pattern: RegExp): void {
  const r = strata(...args);
  const what = `strata ${args.join(' ')}`;
  expect(r.code, `${what}: exit code`).not.toBe(0);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, `${what}: stderr ${JSON.stringify(r.stderr)}`).toHaveLength(1);
  expect(lines[0], what).toMatch(/^strata: /);
  expect(lines[0], what).toMatch(pattern);
  expect(r.stderr, what).not.toMatch(/\n\s+at |internal error/);
}

describe('CLI: bad input is refused with one line and changes nothing', () => {
  let before: string;
  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'strata-cli-'));
    home = join(dir, 'home');
    ok('pool', 'create', '-s', '128M', 'tank', join(dir, 'd1.img'));
    ok('create', '-V', '16M', 'tank/vm1');
    // An exported pool on another device.
    ok('pool', 'create', '-s', '64M', 'other', join(dir, 'd2.img'));
    ok('pool', 'export', 'other');
    // Files that are not pools.
    writeFileSync(join(dir, 'small.img'), '');
    truncateSync(join(dir, 'small.img'), 32 * 1024 * 1024);
    const junkDir = join(dir, 'junk');
    (await import('node:fs')).mkdirSync(junkDir);
    writeFileSync(join(junkDir, 'junk.img'), Buffer.alloc(1024 * 1024, 0x42));
    truncateSync(join(junkDir, 'junk.img'), 64 * 1024 * 1024);
    before = state();
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('devices smaller than 64 MiB', () => {
    expectRefused(['pool', 'create', 'small', join(dir, 'small.img')], /too small/);
    expectRefused(['pool', 'create', '-s', '32M', 'small', join(dir, 'new.img')], /too small/);
    expect(existsSync(join(dir, 'new.img'))).toBe(false);
    expect(state(), 'something changed').toBe(before);
  });

  it('a device already in a pool (imported or exported)', () => {
    expectRefused(['pool', 'create', 'tank2', join(dir, 'd1.img')], /tank/);
    // -f does not take a device from a pool that is imported here.
    expectRefused(['pool', 'create', '-f', 'tank2', join(dir, 'd1.img')], /tank/);
    expectRefused(['pool', 'create', 'tank3', join(dir, 'd2.img')], /exported pool 'other'.*-f/);
    expectRefused(['pool', 'create', 'tank', join(dir, 'd3.img'), '-s', '64M'], /exists/);
    // ...and -f does take a device of an exported pool.
    ok('pool', 'create', '-f', 'tank3', join(dir, 'd2.img'));
    ok('pool', 'destroy', 'tank3');
    expect(state(), 'something changed').toBe(before);
  });

  it('importing something that is not a pool', () => {
    expectRefused(['pool', 'import', '-d', join(dir, 'junk'), 'tank9'], /no such pool/);
    expectRefused(['pool', 'import', '-d', join(dir, 'junk', 'junk.img'), 'tank9'], /no such pool/);
    expectRefused(['pool', 'import', '-d', join(dir, 'nonexistent'), 'tank9'], /nonexistent/);
    expectRefused(['import', join(dir, 'nonexistent.raw'), 'tank/imp'], /nonexistent/);
    expect(state(), 'something changed').toBe(before);
  });

  it('invalid dataset names', () => {
    for (const name of ['tank/bad@x', 'tank/a b', 'tank//x', 'tank/../x', 'tank/', 'tank/a%b']) {
      expectRefused(['create', '-V', '16M', name], /invalid|name/);
    }
    expectRefused(['create', '-V', '16M', 'nopool/x'], /no such pool/);
    expectRefused(['create', '-V', '16M', 'tank/vm1/child'], /volume/);
    expectRefused(['rename', 'tank/vm1', 'tank/bad name'], /invalid/);
    expect(state(), 'something changed').toBe(before);
  });

  it('volume sizes that are not a multiple of the block size', () => {
    expectRefused(['create', '-V', '10000', 'tank/v2'], /multiple/);
    expectRefused(['create', '-b', '64K', '-V', '80K', 'tank/v3'], /multiple/);
    expectRefused(['set', 'volsize=1000', 'tank/vm1'], /multiple/);
    expectRefused(['create', '-V', 'lots', 'tank/v4'], /invalid size/);
    // -p must not leave the parents behind when the volume is refused
    expectRefused(['create', '-p', '-V', '10000', 'tank/p1/p2/v'], /multiple/);
    expect(state(), 'something changed').toBe(before);
  });

  it('property values out of range', () => {
    expectRefused(['create', '-o', 'copies=4', '-V', '16M', 'tank/v5'], /copies/);
    expectRefused(['create', '-b', '3K', '-V', '16M', 'tank/v6'], /volblocksize/);
    expectRefused(['create', '-o', 'compression=foo', '-V', '16M', 'tank/v7'], /compression/);
    expectRefused(['set', 'copies=4', 'tank/vm1'], /copies/);
    expectRefused(['set', 'compression=foo', 'tank/vm1'], /compression/);
    expectRefused(['set', 'volblocksize=8K', 'tank/vm1'], /creation/);
    expectRefused(['set', 'nosuchprop=1', 'tank/vm1'], /property/);
    expectRefused(['set', 'copies=2', 'compression=foo', 'tank/vm1'], /compression/);
    expect(state(), 'something changed').toBe(before);
  });

  it('unknown commands and options', () => {
    expectRefused(['bogus'], /unknown command/);
    expectRefused(['list', '--bogus'], /unknown option/);
    expectRefused(['pool', 'frobnicate'], /unknown command/);
    expectRefused(['create'], /missing/);
    expect(state(), 'something changed').toBe(before);
  });
});
