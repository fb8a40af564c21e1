/**
 * `strata image ...` dispatch (src/cli/main.ts, src/cli/image.ts): the image
 * commands run without loading the rest of the CLI, and their plain forms
 * without commander; what the strict parser accepts, commander reads the
 * same way, and everything else still goes to commander (help, errors).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseImageArgs, registerImageCommands } from '../../src/cli/image.js';
import { CLI, ensureBuilt } from '../pool/engine/build.js';

type Parsed = { name: string; args: Array<string | undefined>; opts: Record<string, unknown> };

/** What commander makes of `strata image ARGS` (null: it refused them, or printed help). */
async function viaCommander(args: string[]): Promise<Parsed | null> {
  let got: Parsed | null = null;
  const program = new Command('strata')
    .option('--home <dir>', 'state directory')
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerImageCommands(program, async (name, a, opts) => {
    got = { name, args: a, opts: { ...opts } };
  });
  try {
    await program.parseAsync(['node', 'strata', 'image', ...args]);
  } catch {
    return null;
  }
  return got;
}

describe('image argument parsing: the strict parser agrees with commander', () => {
  it('plain forms of every subcommand', async () => {
    const cases: string[][] = [
      ['info', 'a.qcow2'],
      ['info', '--output=json', '--backing-chain', '-U', 'a.qcow2'],
      ['info', 'a.qcow2', '--output', 'json', '-f', 'qcow2'],
      ['check', '-r', 'all', '--output', 'json', '-q', 'x'],
      ['create', '-f', 'qcow2', '-o', 'cluster_size=4k', '-o', 'compat=0.10,lazy_refcounts=on', 'n.qcow2', '1G'],
      ['create', '-b', 'base.qcow2', '-F', 'qcow2', '-u', 'top.qcow2'],
      ['convert', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'dst.qcow2'],
      ['convert', '-t', 'unsafe', '-p', '-c', '-O', 'qcow2', '-l', 'snapshot.name=s1', 'a', 'b'],
      ['convert', 'a', '--output-format=qcow2', 'b', '--cache=writeback'],
      ['snapshot', '-c', 'one', 'x.qcow2'],
      ['snapshot', '-l', 'x.qcow2'],
      ['commit', '-d', '-p', 'top.qcow2'],
      ['rebase', '-u', '-b', '', 'top.qcow2'],
      ['rebase', '-b', 'new.qcow2', '-F', 'qcow2', '-f', 'qcow2', 'top.qcow2'],
      ['compare', '-s', '-F', 'raw', 'a', 'b'],
      ['map', '--output=json', 'x'],
      ['resize', '--shrink', 'x', '+1G'],
      ['resize', 'x', '10M'],
      ['info', ''],
      ['info', '--output=', 'x'],
    ];
    for (const c of cases) {
      const fast = parseImageArgs(c);
      expect(fast, c.join(' ')).not.toBeNull();
      expect(fast, c.join(' ')).toEqual(await viaCommander(c));
    }
  });

  it('leaves to commander what it does not parse (help, mistakes, unusual spellings)', async () => {
    const cases: string[][] = [
      [],
      ['help'],
      ['help', 'convert'],
      ['--help'],
      ['convert', '--help'],
      ['convert', '-h', 'a', 'b'],
      ['infox', 'a'],
      ['info'],
      ['info', 'a', 'b'],
      ['convert', 'a'],
      ['convert', '--bogus', 'a', 'b'],
      ['convert', '-pc', 'a', 'b'],
      ['convert', '-Oqcow2', 'a', 'b'],
      ['convert', '-O'],
      ['convert', '-c=1', 'a', 'b'],
      ['convert', '--compress=yes', 'a', 'b'],
      ['convert', '-f', '-O', 'a', 'b'],
      ['info', '--', 'a'],
      ['resize', 'x', '-1G'],
      ['info', '-', 'x'],
      ['info', '--home', 'h', 'x'],
    ];
    for (const c of cases) expect(parseImageArgs(c), c.join(' ')).toBeNull();
  });

  it('random argument lists: whatever the strict parser accepts, commander parses identically', async () => {
    const words = ['info', 'check', 'create', 'convert', 'snapshot', 'commit', 'rebase', 'compare', 'map', 'resize'];
    const flags = ['-f', '--format', '-O', '--output-format', '-o', '--options', '-c', '-p', '-t', '-l', '-b', '-F', '-u', '-q', '-d', '-a', '-s', '-r', '-U',
      '--output', '--backing-chain', '--shrink', '--strict', '--keep', '--list', '--cache', '--snapshot', '--repair', '--quiet', '--bogus', '-x', '--'];
    const values = ['qcow2', 'raw', 'json', '', 'a=b,c=d', 'x y', '1G', '-1', 'file.img'];
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    let accepted = 0;
    for (let i = 0; i < 10000; i++) {
      const args = [words[rnd(words.length)]!];
      for (let n = rnd(7); n > 0; n--) {
        const k = rnd(4);
        if (k === 0) args.push(values[rnd(values.length)]!);
        else if (k === 1) args.push(`${flags[rnd(flags.length)]!}=${values[rnd(values.length)]!}`);
        else args.push(flags[rnd(flags.length)]!);
      }
      const fast = parseImageArgs(args);
      if (fast === null) continue;
      accepted++;
      expect(await viaCommander(args), JSON.stringify(args)).toEqual(fast);
    }
    expect(accepted).toBeGreaterThan(200);
  });
});

describe('strata image through the real binary', () => {
  let dir: string;
  let hooks: string;
  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'strata-dispatch-'));
    // A module hook that records every module the process loads.
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';
export async function load(url, ctx, next) { appendFileSync(${JSON.stringify(join(dir, 'loaded.txt'))}, url + '\\n'); return next(url, ctx); }
`,
    );
    hooks = join(dir, 'register.mjs');
    writeFileSync(hooks, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
    const q = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '4M']);
    if (q.status !== 0) writeFileSync(join(dir, 'a.qcow2'), Buffer.alloc(4 << 20)); // no qemu-img: a raw image will do
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = (args: string[], withHooks = false) => {
    rmSync(join(dir, 'loaded.txt'), { force: true });
    const r = spawnSync(process.execPath, [...(withHooks ? ['--import', hooks] : []), CLI, ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    const loaded = withHooks ? readFileSync(join(dir, 'loaded.txt'), 'utf8').split('\n').filter(Boolean) : [];
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, loaded };
  };
  const heavy = (urls: string[]) => urls.filter((u) => /\/src\/(pool|daemon|volume|nbd|snapshot)\/|\/src\/cli\/(pool|dataset|transfer|serve|bench|context)\.js|node_modules\/commander/.test(u));

  it('strata --help still lists the image commands', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}image +inspect, create and convert/m);
  });

  it('image commands load neither the other command groups nor commander; --home before image is accepted', () => {
    const plain = run(['image', 'info', 'a.qcow2'], true);
    expect(plain.status).toBe(0);
    expect(heavy(plain.loaded)).toEqual([]);
    expect(plain.loaded.some((u) => u.endsWith('/src/cli/image/info.js'))).toBe(true);
    const home = run(['--home', join(dir, 'home'), 'image', 'info', 'a.qcow2'], true);
    expect(home.status).toBe(0);
    expect(home.stdout).toBe(plain.stdout);
    expect(heavy(home.loaded)).toEqual([]);
    const conv = run(['image', 'convert', '-O', 'raw', 'a.qcow2', 'b.raw'], true);
    expect(conv.status).toBe(0);
    expect(heavy(conv.loaded)).toEqual([]);
  });

  it('unusual spellings go through commander, with the same result; mistakes are one line and exit 2', () => {
    const viaCmdr = run(['image', 'info', '--', 'a.qcow2'], true);
    expect(viaCmdr.status).toBe(0);
    expect(viaCmdr.loaded.some((u) => u.includes('node_modules/commander'))).toBe(true);
    expect(heavy(viaCmdr.loaded).filter((u) => !u.includes('commander'))).toEqual([]);
    expect(viaCmdr.stdout).toBe(run(['image', 'info', 'a.qcow2']).stdout);
    const bad = run(['image', 'convert', '--bogus', 'a.qcow2', 'b.raw']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe("strata: unknown option '--bogus'\n");
    const missing = run(['image', 'info', 'missing.qcow2']);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^strata: /);
  });
});
