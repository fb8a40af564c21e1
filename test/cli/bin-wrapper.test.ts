/**
 * bin/strata, the installed command (package.json "bin"): a /bin/sh script
 * that runs node on dist/src/cli/main.js with NODE_EXTRA_CA_CERTS unset.
 *
 * Node 20 loads NODE_EXTRA_CA_CERTS at start and, when the file is missing,
 * prints "Warning: Ignoring extra certs from ..." on stderr: running with
 * NODE_EXTRA_CA_CERTS=/nonexistent shows whether the variable reached node.
 * The tests rely on dist/ being built (ensureBuilt, as the other CLI tests).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as cli from '../helpers/cli.js';
import { MALLOC_TUNABLES, NODE_FLAGS } from '../../src/cli/node-env.js';

const { BIN, ROOT } = cli;
/** dist/ built, and the CLI bundle too where the helpers know how to make it (bin/strata may run it for `image`). */
function ensureBuilt(): void {
  const h = cli as { ensureBundled?: () => void; ensureBuilt: () => void };
  (h.ensureBundled ?? h.ensureBuilt)();
}

const WRAPPER = path.join(ROOT, 'bin', 'strata');
const WARNING = 'Warning: Ignoring extra certs from';
const MISSING_CERTS = '/nonexistent/strata-no-such-ca.pem';

let dir: string;
let image: string;

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run `cmd args` with NODE_EXTRA_CA_CERTS pointing at a missing file; node first on PATH (the wrapper runs `node`). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Run {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
    NODE_EXTRA_CA_CERTS: MISSING_CERTS,
    ...opts.env,
  };
  delete env.NODE_OPTIONS; // vitest's own, if any, must not reach the child
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env, timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The control: node on main.js directly, same environment. */
function direct(args: string[], cwd?: string): Run {
  return run(process.execPath, [BIN, ...args], { cwd });
}

function expectInfo(r: Run, file: string): void {
  expect(r.stderr).not.toContain(WARNING);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toContain(`image: ${file}`);
  expect(r.stdout).toContain('file format: qcow2');
  expect(r.stdout).toContain('virtual size: 3 MiB (3145728 bytes)');
  expect(r.stdout).toContain('cluster_size: 65536');
}

beforeAll(() => {
  ensureBuilt();
  dir = fs.mkdtempSync(path.join(tmpdir(), 'strata-bin-wrapper-'));
  image = path.join(dir, 'small image.qcow2'); // a space: arguments must pass through intact
  const q = spawnSync('qemu-img', ['create', '-f', 'qcow2', image, '3M'], { encoding: 'utf8' });
  if (q.status !== 0) throw new Error(`qemu-img create: ${q.stderr}`);
  const w = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 64k 128k', image], { encoding: 'utf8' });
  if (w.status !== 0) throw new Error(`qemu-io: ${w.stderr}`);
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('bin/strata', () => {
  it('is package.json\'s "bin", an executable /bin/sh script', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin?: Record<string, string> | string };
    expect(pkg.bin).toEqual({ strata: 'bin/strata' });
    const st = fs.statSync(WRAPPER);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o111).toBe(0o111); // executable by everyone, as npm installs it
    fs.accessSync(WRAPPER, fs.constants.X_OK);
    expect(fs.readFileSync(WRAPPER, 'utf8').split('\n')[0]).toBe('#!/bin/sh');
    expect(fs.existsSync(BIN)).toBe(true);
  });

  it('control: node on main.js with NODE_EXTRA_CA_CERTS set to a missing file warns (Node 20 loads it at start)', () => {
    const r = direct(['image', 'info', image]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`${WARNING} \`${MISSING_CERTS}\``);
    expect(r.stdout).toContain('file format: qcow2');
  });

  it('drops NODE_EXTRA_CA_CERTS: no warning, and the same output as main.js', () => {
    const r = run(WRAPPER, ['image', 'info', image]);
    expectInfo(r, image);
    expect(r.stdout).toBe(direct(['image', 'info', image]).stdout);
    // JSON output too (arguments after the subcommand pass through).
    const j = run(WRAPPER, ['image', 'info', '--output', 'json', image]);
    expect(j.status).toBe(0);
    expect(j.stderr).not.toContain(WARNING);
    const info = JSON.parse(j.stdout) as Record<string, unknown>;
    expect(info['virtual-size']).toBe(3 * 1024 * 1024);
    expect(info.format).toBe('qcow2');
  });

  it('drops it for commands other than `image` too, with global options before the command', () => {
    const help = run(WRAPPER, ['--help']);
    expect(help.status).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout).toContain('Usage: strata');
    expect(help.stdout).toBe(direct(['--help']).stdout);
    const home = path.join(dir, 'home dir');
    for (const args of [
      ['--home', home, 'image', 'info', image],
      [`--home=${home}`, 'image', 'info', image],
      ['--home', 'image', 'image', 'info', image], // a --home value that reads "image"
    ]) {
      const r = run(WRAPPER, args);
      expectInfo(r, image);
      expect(r.stdout).toBe(direct(args).stdout);
    }
  });

  it('runs through an npm-link-style symlink chain, directly and from PATH', () => {
    // npm link: <prefix>/lib/node_modules/strata -> the package, and
    // <prefix>/bin/strata -> ../lib/node_modules/strata/bin/strata.
    const prefix = fs.mkdtempSync(path.join(dir, 'prefix-'));
    fs.mkdirSync(path.join(prefix, 'lib', 'node_modules'), { recursive: true });
    fs.mkdirSync(path.join(prefix, 'bin'));
    fs.symlinkSync(ROOT, path.join(prefix, 'lib', 'node_modules', 'strata'), 'dir');
    const link = path.join(prefix, 'bin', 'strata');
    fs.symlinkSync('../lib/node_modules/strata/bin/strata', link);
    expect(fs.realpathSync(link)).toBe(fs.realpathSync(WRAPPER));

    expectInfo(run(link, ['image', 'info', image]), image);
    // As a shell finds it on PATH, from an unrelated directory.
    const r = run('strata', ['image', 'info', image], {
      cwd: tmpdir(),
      env: { PATH: `${path.join(prefix, 'bin')}${path.delimiter}${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` },
    });
    expectInfo(r, image);
    // An absolute symlink straight at the script works too.
    const abs = path.join(prefix, 'strata-abs');
    fs.symlinkSync(WRAPPER, abs);
    expectInfo(run(abs, ['image', 'info', image]), image);
  });

  it('runs by a relative path from another working directory, which it keeps', () => {
    const cwd = fs.mkdtempSync(path.join(dir, 'cwd-'));
    fs.copyFileSync(image, path.join(cwd, 'here.qcow2'));
    const rel = path.relative(cwd, WRAPPER);
    expect(rel.startsWith('..')).toBe(true);
    // The image is named relative to the caller's directory: the wrapper must not change it.
    expectInfo(run(rel.includes('/') ? rel : `./${rel}`, ['image', 'info', 'here.qcow2'], { cwd }), 'here.qcow2');
    // From the package directory itself, as ./bin/strata.
    expectInfo(run('./bin/strata', ['image', 'info', image], { cwd: ROOT }), image);
  });

  it('passes the exit status and stderr of a failing command through', () => {
    const missing = path.join(dir, 'no-such.qcow2');
    const w = run(WRAPPER, ['image', 'info', missing]);
    const d = direct(['image', 'info', missing]);
    expect(d.status).not.toBe(0);
    expect(w.status).toBe(d.status);
    expect(w.stdout).toBe(d.stdout);
    // The same error message, minus the certificate warning.
    expect(w.stderr).not.toContain(WARNING);
    const dErr = d.stderr
      .split('\n')
      .filter((l) => !l.includes(WARNING))
      .join('\n');
    expect(w.stderr).toBe(dErr);
    expect(w.stderr).toContain('no-such.qcow2');
  });

  describe('the script alone, in a package of stub programs', () => {
    // A copy of bin/strata in a package whose dist/src/cli programs only
    // report how they were run: which file, the arguments, whether
    // NODE_EXTRA_CA_CERTS arrived, and the working directory.
    const stub = (entry: string) =>
      `process.stdout.write(JSON.stringify({ entry: ${JSON.stringify(entry)}, argv: process.argv.slice(2), certs: process.env.NODE_EXTRA_CA_CERTS ?? null, keep: process.env.STRATA_WRAPPER_KEEP ?? null, tunables: process.env.GLIBC_TUNABLES ?? null, execArgv: process.execArgv, cwd: process.cwd() }));\n`;
    let pkg: string;
    beforeAll(() => {
      pkg = fs.mkdtempSync(path.join(dir, 'stub-pkg-'));
      fs.mkdirSync(path.join(pkg, 'bin'));
      fs.mkdirSync(path.join(pkg, 'dist', 'src', 'cli'), { recursive: true });
      fs.copyFileSync(WRAPPER, path.join(pkg, 'bin', 'strata'));
      fs.chmodSync(path.join(pkg, 'bin', 'strata'), 0o755);
      fs.writeFileSync(path.join(pkg, 'dist', 'src', 'cli', 'main.js'), stub('main.js'));
    });

    interface Seen {
      entry: string;
      argv: string[];
      certs: string | null;
      keep: string | null;
      tunables: string | null;
      execArgv: string[];
      cwd: string;
    }
    const seen = (r: Run): Seen => {
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as Seen;
    };

    it('unsets NODE_EXTRA_CA_CERTS only, passes every argument intact, keeps the working directory', () => {
      const args = ['image', 'info', 'a b', '', '*', '$HOME', "it's", '--x=1 2', '-'];
      const cwd = fs.mkdtempSync(path.join(dir, 'stub-cwd-'));
      const r = seen(run(path.join(pkg, 'bin', 'strata'), args, { cwd, env: { STRATA_WRAPPER_KEEP: 'kept' } }));
      expect(r.entry).toBe('main.js'); // no bundle in this package
      expect(r.argv).toEqual(args);
      expect(r.certs).toBeNull();
      expect(r.keep).toBe('kept');
      expect(fs.realpathSync(r.cwd)).toBe(fs.realpathSync(cwd));
    });

    it("sets glibc's malloc tunables to src/cli/node-env.ts's MALLOC_TUNABLES, unless the caller chose their own", () => {
      const bin = path.join(pkg, 'bin', 'strata');
      for (const args of [['serve'], ['image', 'info', 'x'], ['--home', 'h', 'list']]) {
        expect(seen(run(bin, args, { env: { GLIBC_TUNABLES: '' } })).tunables, args.join(' ')).toBe(MALLOC_TUNABLES);
      }
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
      delete env.GLIBC_TUNABLES;
      delete env.NODE_OPTIONS;
      const r = spawnSync(bin, ['serve'], { encoding: 'utf8', env });
      expect(JSON.parse(r.stdout).tunables).toBe(MALLOC_TUNABLES);
      expect(seen(run(bin, ['serve'], { env: { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' } })).tunables).toBe('glibc.malloc.arena_max=2');
    });

    it("starts node with src/cli/node-env.ts's NODE_FLAGS, for every command", () => {
      const bin = path.join(pkg, 'bin', 'strata');
      for (const args of [['serve'], ['image', 'info', 'x'], ['--home', 'h', 'list'], ['list']]) {
        expect(seen(run(bin, args)).execArgv, args.join(' ')).toEqual([...NODE_FLAGS]);
      }
    });

    it('commands other than `image` run main.js; `image` runs main.js or, when it is built, the bundle', () => {
      const bundle = path.join(pkg, 'dist', 'src', 'cli', 'main-fast.cjs');
      const bin = path.join(pkg, 'bin', 'strata');
      for (const withBundle of [false, true]) {
        if (withBundle) fs.writeFileSync(bundle, stub('main-fast.cjs'));
        else fs.rmSync(bundle, { force: true });
        for (const args of [['list'], ['--help'], ['--home', 'h', 'list'], ['pool', 'image']]) {
          const r = seen(run(bin, args));
          expect(r.entry, args.join(' ')).toBe('main.js');
          expect(r.argv).toEqual(args);
          expect(r.certs).toBeNull();
        }
        for (const args of [['image', 'info', 'x'], ['--home', 'h', 'image', 'convert'], ['--home=h', 'image']]) {
          const r = seen(run(bin, args));
          expect(withBundle ? ['main.js', 'main-fast.cjs'] : ['main.js'], args.join(' ')).toContain(r.entry);
          expect(r.argv).toEqual(args);
          expect(r.certs).toBeNull();
        }
      }
      fs.rmSync(bundle, { force: true });
    });

    it('finds its package through a relative symlink, a symlinked package directory and PATH', () => {
      const prefix = fs.mkdtempSync(path.join(dir, 'stub-prefix-'));
      fs.mkdirSync(path.join(prefix, 'lib', 'node_modules'), { recursive: true });
      fs.mkdirSync(path.join(prefix, 'bin'));
      fs.symlinkSync(pkg, path.join(prefix, 'lib', 'node_modules', 'strata'), 'dir');
      fs.symlinkSync('../lib/node_modules/strata/bin/strata', path.join(prefix, 'bin', 'strata'));
      // Through the symlinked package directory without a symlinked file.
      const viaDir = path.join(prefix, 'lib', 'node_modules', 'strata', 'bin', 'strata');
      for (const [cmd, env] of [
        [path.join(prefix, 'bin', 'strata'), {}],
        [viaDir, {}],
        ['strata', { PATH: `${path.join(prefix, 'bin')}${path.delimiter}${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` }],
      ] as const) {
        const r = seen(run(cmd, ['list', 'x y'], { cwd: tmpdir(), env }));
        expect(r.entry).toBe('main.js');
        expect(r.argv).toEqual(['list', 'x y']);
        expect(r.certs).toBeNull();
      }
    });

    it('runs as `sh strata` from its own directory and as `sh bin/strata` (a $0 with and without a slash)', () => {
      for (const [cwd, script] of [
        [path.join(pkg, 'bin'), 'strata'],
        [pkg, 'bin/strata'],
      ] as const) {
        const r = seen(run('/bin/sh', [script, 'list', 'x y'], { cwd }));
        expect(r.entry).toBe('main.js');
        expect(r.argv).toEqual(['list', 'x y']);
        expect(r.certs).toBeNull();
      }
    });
  });
});
