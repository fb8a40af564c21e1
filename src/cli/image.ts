/**
 * `strata image ...`: qemu-img's syntax and exit codes over formats/ (raw,
 * qcow2 with backing chains). Each subcommand lives in ./image/.
 *
 * The subcommands are declared once, in SUBCOMMANDS, and that table feeds
 * both commander (registerImageCommands: help, errors, every form of
 * argument commander accepts) and parseImageArgs, a strict parser for the
 * plain forms (`-f qcow2`, `--output=json`, positionals that do not start
 * with '-') that lets `strata image ...` run without loading commander at
 * all (main.ts): start-up is a visible part of short commands and of
 * `convert` on small images. Whatever parseImageArgs does not recognize
 * goes to commander, so help, errors and exit codes come from one place.
 */
import type { Command } from 'commander';
import type { commitCommand, rebaseCommand } from './image/chain-ops.js';
import { action, collect } from './image/common.js';
import type { convertCommand } from './image/convert.js';
import type { createCommand } from './image/create.js';
import type { compareCommand, mapCommand, resizeCommand } from './image/inspect.js';
import type { snapshotCommand } from './image/snapshot.js';

// Each subcommand's module (and the formats it needs) is loaded only when
// that subcommand runs: start-up is a visible part of short commands.
const load = {
  check: () => import('./image/check.js'),
  chainOps: () => import('./image/chain-ops.js'),
  convert: () => import('./image/convert.js'),
  create: () => import('./image/create.js'),
  info: () => import('./image/info.js'),
  inspect: () => import('./image/inspect.js'),
  snapshot: () => import('./image/snapshot.js'),
};

interface OptionSpec {
  /** commander's flags string: '-f, --format <fmt>' or '--backing-chain'. */
  flags: string;
  description: string;
  default?: string;
  /** Repeatable: values accumulate in a list (common.ts collect). */
  repeat?: true;
}

interface Subcommand {
  name: string;
  description: string;
  options: OptionSpec[];
  /** Positionals as commander declares them: '<file>' (required) or '[size]' (optional). */
  args: Array<string | { name: string; description: string }>;
  /** Exit status for failures (qemu-img: 1; compare reserves 1 for "different"). */
  errorCode?: number;
  run: (args: Array<string | undefined>, o: any) => Promise<void>;
}

const FORMAT: OptionSpec = { flags: '-f, --format <fmt>', description: 'image format' };

const SUBCOMMANDS: Subcommand[] = [
  {
    name: 'info',
    description: 'show information about an image',
    options: [
      { flags: '-f, --format <fmt>', description: 'image format (probed by default)' },
      { flags: '--output <fmt>', description: 'human or json', default: 'human' },
      { flags: '--backing-chain', description: 'show every image of the backing chain' },
      { flags: '-U, --force-share', description: 'accepted for compatibility' },
    ],
    args: ['<file>'],
    run: async ([file], o) => (await load.info()).infoCommand(file!, o),
  },
  {
    name: 'check',
    description: 'check an image for consistency (exit 0 clean, 2 corruptions, 3 leaks)',
    options: [
      FORMAT,
      { flags: '-r, --repair <what>', description: 'repair leaks or all' },
      { flags: '--output <fmt>', description: 'human or json', default: 'human' },
      { flags: '-q, --quiet', description: 'accepted for compatibility' },
    ],
    args: ['<file>'],
    run: async ([file], o) => (await load.check()).checkCommand(file!, o),
  },
  {
    name: 'create',
    description: 'create a new image',
    options: [
      { flags: '-f, --format <fmt>', description: 'raw or qcow2', default: 'raw' },
      { flags: '-o, --options <list>', description: 'cluster_size,compat,refcount_bits,extended_l2,compression_type,lazy_refcounts,preallocation', repeat: true },
      { flags: '-b, --backing <file>', description: 'backing file' },
      { flags: '-F, --backing-format <fmt>', description: 'backing file format' },
      { flags: '-u, --unsafe', description: 'do not open the backing file' },
      { flags: '-q, --quiet', description: 'no output' },
    ],
    args: ['<file>', '[size]'],
    run: async ([file, size], o: Parameters<typeof createCommand>[2]) => (await load.create()).createCommand(file!, size, o),
  },
  {
    name: 'convert',
    description: 'convert an image (or an internal snapshot) to a new image',
    options: [
      { flags: '-f, --format <fmt>', description: 'source format' },
      { flags: '-O, --output-format <fmt>', description: 'raw or qcow2', default: 'raw' },
      { flags: '-c, --compress', description: 'compress the output clusters (qcow2)' },
      { flags: '-o, --options <list>', description: 'output creation options', repeat: true },
      { flags: '-l, --snapshot <spec>', description: 'snapshot.name=NAME, snapshot.id=ID, or NAME' },
      { flags: '-p, --progress', description: 'show progress' },
      { flags: '-t, --cache <mode>', description: 'output cache mode: writeback (default, output durable at exit) or unsafe (no sync)' },
    ],
    args: ['<src>', '<dst>'],
    run: async ([src, dst], o: Parameters<typeof convertCommand>[2]) => (await load.convert()).convertCommand(src!, dst!, o),
  },
  {
    name: 'snapshot',
    description: 'create, apply, delete or list internal snapshots',
    options: [
      { flags: '-c, --create <name>', description: 'create a snapshot' },
      { flags: '-a, --apply <name>', description: 'revert the disk to a snapshot' },
      { flags: '-d, --delete <name>', description: 'delete a snapshot' },
      { flags: '-l, --list', description: 'list snapshots' },
      FORMAT,
    ],
    args: ['<file>'],
    run: async ([file], o: Parameters<typeof snapshotCommand>[1]) => (await load.snapshot()).snapshotCommand(file!, o),
  },
  {
    name: 'commit',
    description: 'write the changes of an image into its backing file',
    options: [FORMAT, { flags: '-d, --keep', description: 'do not empty the image afterwards' }, { flags: '-p, --progress', description: 'show progress' }],
    args: ['<file>'],
    run: async ([file], o: Parameters<typeof commitCommand>[1]) => (await load.chainOps()).commitCommand(file!, o),
  },
  {
    name: 'rebase',
    description: 'change the backing file of an image',
    options: [
      FORMAT,
      { flags: '-b, --backing <file>', description: 'new backing file ("" for none)' },
      { flags: '-F, --backing-format <fmt>', description: 'new backing file format' },
      { flags: '-u, --unsafe', description: 'only change the header' },
      { flags: '-p, --progress', description: 'show progress' },
    ],
    args: ['<file>'],
    run: async ([file], o: Parameters<typeof rebaseCommand>[1]) => (await load.chainOps()).rebaseCommand(file!, o),
  },
  {
    name: 'compare',
    description: 'compare the contents of two images (exit 0 same, 1 different, 2 error)',
    options: [
      { flags: '-f, --format <fmt>', description: 'format of the first image' },
      { flags: '-F, --second-format <fmt>', description: 'format of the second image' },
      { flags: '-s, --strict', description: 'images of different sizes differ' },
      { flags: '-p, --progress', description: 'accepted for compatibility' },
    ],
    args: ['<a>', '<b>'],
    errorCode: 2,
    run: async ([a, b], o: Parameters<typeof compareCommand>[2]) => (await load.inspect()).compareCommand(a!, b!, o),
  },
  {
    name: 'map',
    description: 'show how the guest disk maps to image files',
    options: [FORMAT, { flags: '--output <fmt>', description: 'human or json', default: 'human' }],
    args: ['<file>'],
    run: async ([file], o: Parameters<typeof mapCommand>[1]) => (await load.inspect()).mapCommand(file!, o),
  },
  {
    name: 'resize',
    description: 'change the virtual size of an image',
    options: [FORMAT, { flags: '--shrink', description: 'allow shrinking' }],
    args: ['<file>', { name: '<size>', description: 'SIZE, +SIZE or -SIZE' }],
    run: async ([file, size], o: Parameters<typeof resizeCommand>[2]) => (await load.inspect()).resizeCommand(file!, size!, o),
  },
];

/** How the image commands are run once parsed (tests pass their own to compare the two parsers). */
export type ImageRunner = (name: string, args: Array<string | undefined>, opts: Record<string, unknown>) => Promise<void>;

/** Run a parsed image command: one line `strata: message` on error and process.exitCode set (common.ts action). */
export const runImageCommand: ImageRunner = (name, args, opts) => {
  const sc = SUBCOMMANDS.find((s) => s.name === name)!;
  return action((a: Array<string | undefined>, o: unknown) => sc.run(a, o), sc.errorCode)(args, opts);
};

export function registerImageCommands(program: Command, run: ImageRunner = runImageCommand): void {
  const image = program.command('image').description('inspect, create and convert raw/qcow2 image files (qemu-img syntax)');
  for (const sc of SUBCOMMANDS) {
    const c = image.command(sc.name).description(sc.description);
    for (const o of sc.options) {
      if (o.repeat) c.option(o.flags, o.description, collect);
      else if (o.default !== undefined) c.option(o.flags, o.description, o.default);
      else c.option(o.flags, o.description);
    }
    for (const a of sc.args) {
      if (typeof a === 'string') c.argument(a);
      else c.argument(a.name, a.description);
    }
    if (sc.name === 'resize') c.allowExcessArguments(false);
    // commander passes the declared positionals (undefined for a missing optional one), the options, the command.
    const n = sc.args.length;
    c.action((...xs: unknown[]) => run(sc.name, xs.slice(0, n) as Array<string | undefined>, xs[n] as Record<string, unknown>));
  }
  for (const c of image.commands) c.exitOverride();
}

interface ParsedFlag {
  short?: string;
  long: string;
  /** The key commander stores the value under (camel case of the long name). */
  key: string;
  takesValue: boolean;
  spec: OptionSpec;
}

function parseFlags(spec: OptionSpec): ParsedFlag {
  const m = /^(?:(-[A-Za-z]), )?(--[a-z][a-z-]*)(?: <[a-z]+>)?$/.exec(spec.flags);
  if (!m) throw new Error(`image.ts: unsupported flags '${spec.flags}'`);
  const key = m[2]!.slice(2).replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase());
  return { short: m[1], long: m[2]!, key, takesValue: spec.flags.endsWith('>'), spec };
}

/**
 * The subcommand, positionals and options of `args` (the words after
 * `image`), exactly as commander would parse them, or null for anything
 * this strict parser leaves to commander: help, unknown subcommands or
 * options, `--`, grouped short flags (`-pc`), attached values (`-fraw`),
 * option values or positionals starting with '-', a wrong number of
 * positionals. Only what both parsers read the same way is accepted
 * (test/cli/image-dispatch.test.ts compares them).
 */
export function parseImageArgs(args: readonly string[]): { name: string; args: Array<string | undefined>; opts: Record<string, unknown> } | null {
  const sc = SUBCOMMANDS.find((s) => s.name === args[0]);
  if (!sc) return null;
  const flags = sc.options.map(parseFlags);
  const opts: Record<string, unknown> = {};
  for (const f of flags) if (f.spec.default !== undefined) opts[f.key] = f.spec.default;
  const positional: string[] = [];
  for (let i = 1; i < args.length; i++) {
    const w = args[i]!;
    if (!w.startsWith('-')) {
      positional.push(w);
      continue;
    }
    const eq = w.startsWith('--') ? w.indexOf('=') : -1;
    const name = eq >= 0 ? w.slice(0, eq) : w;
    const f = flags.find((x) => x.long === name || x.short === name);
    if (!f) return null;
    if (!f.takesValue) {
      if (eq >= 0) return null;
      opts[f.key] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = w.slice(eq + 1);
    else {
      if (i + 1 >= args.length) return null;
      value = args[++i]!;
    }
    if (value.startsWith('-')) return null;
    opts[f.key] = f.spec.repeat ? collect(value, opts[f.key] as string[] | undefined) : value;
  }
  const required = sc.args.filter((a) => (typeof a === 'string' ? a : a.name).startsWith('<')).length;
  if (positional.length < required || positional.length > sc.args.length) return null;
  const out: Array<string | undefined> = positional.slice();
  while (out.length < sc.args.length) out.push(undefined);
  return { name: sc.name, args: out, opts };
}
