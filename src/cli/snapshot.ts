/** `strata snapshot|rollback|clone|promote|hold|release|holds|diff`: ZFS's snapshot verbs. */
import type { Command } from 'commander';
import { err } from '../errors.js';
import type { CliContext } from './context.js';
import { printJson, printTable } from './output.js';
import { collect, commandLine, parseAssignments } from './args.js';


/** Expand `name{001..100}` (and `{a,b}`) as bash does, for names passed quoted. */
export function expandBraces(s: string): string[] {
  const m = /\{([^{}]*)\}/.exec(s);
  if (!m) return [s];
  const [pre, post] = [s.slice(0, m.index), s.slice(m.index + m[0].length)];
  let items: string[];
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(m[1]!);
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    const width = range[1]!.startsWith('0') || range[2]!.startsWith('0') ? Math.max(range[1]!.length, range[2]!.length) : 0;
    if (Math.abs(b - a) > 100_000) throw err.inval(`brace range '${m[0]}' is too large`);
    items = [];
    for (let i = a; a <= b ? i <= b : i >= b; i += a <= b ? 1 : -1) items.push(String(i).padStart(width, '0'));
  } else items = m[1]!.split(',');
  return items.flatMap((it) => expandBraces(pre + it + post));
}

export function registerSnapshotCommands(program: Command, ctx: CliContext): void {
  program
    .command('snapshot')
    .alias('snap')
    .description('take snapshots (atomic, constant time): VOL@SNAP...; or --auto [DATASET...] to apply snapshot:policy (for cron)')
    .argument('[names...]')
    .option('-r', 'also every descendant dataset')
    .option('--auto', "take due snapshots and destroy expired ones per the 'snapshot:policy' property")
    .option('-n', 'with --auto: only print what would be done')
    .option('-v', 'with --auto: print what was done')
    .action(async (names: string[], o: { r?: boolean; auto?: boolean; n?: boolean; v?: boolean }) => {
      const api = await ctx.api();
      if (o.auto) {
        if (names.some((n) => n.includes('@'))) throw err.inval('snapshot --auto takes dataset names, not snapshots');
        const r = await api.autoSnapshot(names, { dryRun: !!o.n });
        if (o.n || o.v) {
          const verb = o.n ? 'would ' : '';
          for (const t of r.taken) process.stdout.write(`${verb}snapshot ${t}\n`);
          for (const d of r.destroyed) process.stdout.write(`${verb}destroy ${d}\n`);
          for (const k of r.kept) process.stdout.write(`keep ${k.name} (expired but ${k.why})\n`);
        }
        return;
      }
      if (names.length === 0) throw err.inval('usage: strata snapshot [-r] VOL@SNAP... | strata snapshot --auto [DATASET...]');
      await api.snapshot(names, { recursive: !!o.r, command: commandLine() });
    });

  program
    .command('rollback')
    .description('return a volume to a snapshot (or a clone to its origin with --to-origin)')
    .argument('<name>', 'VOL@SNAP, or VOL with --to-origin')
    .option('-r', 'destroy later snapshots')
    .option('-R', 'destroy later snapshots and their clones')
    .option('-f', 'even if the volume is exported')
    .option('--to-origin', 'reset a clone to its origin snapshot')
    .action(async (name: string, o: { r?: boolean; R?: boolean; f?: boolean; toOrigin?: boolean }) => {
      const api = await ctx.api();
      if (o.toOrigin) return api.rollbackToOrigin(name, { force: !!o.f, command: commandLine() });
      await api.rollback(name, { recursive: !!o.r, recursiveClones: !!o.R, force: !!o.f, command: commandLine() });
    });

  program
    .command('clone')
    .description('writable clones of a snapshot: clone [-o p=v] SNAP NEW...  (or --template SNAP NEW{001..100})')
    .argument('<args...>')
    .option('-o <prop=value>', 'property for the clones', collect, [])
    .option('--template <snap>', 'the origin snapshot (template provisioning)')
    .option('-n, --count <n>', 'clones named NEW001..NEWn from one prefix')
    .action(async (args: string[], o: { o: string[]; template?: string; count?: string }) => {
      const origin = o.template ?? args[0];
      let targets = o.template ? args : args.slice(1);
      if (!origin || !origin.includes('@')) throw err.inval('usage: strata clone SNAP NEW... (or --template SNAP NEW...)');
      if (o.count !== undefined) {
        const n = Number(o.count);
        if (!Number.isInteger(n) || n < 1 || n > 100_000) throw err.inval(`invalid count '${o.count}'`);
        if (targets.length !== 1) throw err.inval('--count takes one name prefix');
        const w = Math.max(3, String(n).length);
        targets = Array.from({ length: n }, (_, i) => targets[0] + String(i + 1).padStart(w, '0'));
      }
      targets = targets.flatMap(expandBraces);
      if (targets.length === 0) throw err.inval('clone: no target names given');
      await (await ctx.api()).clone(origin, targets, parseAssignments(o.o), commandLine());
    });

  program
    .command('promote')
    .description('make a clone independent of its origin (the origin becomes its clone)')
    .argument('<clone>')
    .action(async (name: string) => (await ctx.api()).promote(name, commandLine()));

  program
    .command('hold')
    .description('hold snapshots so they cannot be destroyed')
    .argument('<tag>')
    .argument('<snapshots...>')
    .action(async (tag: string, snaps: string[]) => (await ctx.api()).hold(tag, snaps, commandLine()));

  program
    .command('release')
    .description('release a hold')
    .argument('<tag>')
    .argument('<snapshots...>')
    .action(async (tag: string, snaps: string[]) => (await ctx.api()).release(tag, snaps, commandLine()));

  program
    .command('holds')
    .description('list holds: NAME TAG TIMESTAMP')
    .argument('<snapshots...>')
    .option('-H', 'scripted mode')
    .action(async (snaps: string[], o: { H?: boolean }) => {
      const rows = await (await ctx.api()).holds(snaps);
      printTable(['NAME', 'TAG', 'TIMESTAMP'], rows.map((r) => [r.name, r.tag, new Date(r.timestamp).toString().slice(0, 24)]), { scripted: o.H });
    });

  program
    .command('diff')
    .description('block ranges that changed between a snapshot and a later snapshot or the volume (+ added, - freed, M modified)')
    .argument('<from>', 'VOL@SNAP')
    .argument('[to]', 'VOL@LATER or VOL (default: the volume now)')
    .option('--json', 'JSON output')
    .option('-H', 'scripted mode')
    .option('-p', 'exact numbers')
    .action(async (from: string, to: string | undefined, o: { json?: boolean; H?: boolean; p?: boolean }) => {
      const ranges = await (await ctx.api()).diff(from, to);
      if (o.json) return printJson(ranges);
      for (const r of ranges) process.stdout.write(`${r.change}\t${r.offset}\t${r.length}\n`);
    });

  program
    .command('amplification')
    .description('device I/O per guest byte written, measured per volume since import (cow copy-outs, row merges, read-modify-write)')
    .argument('[volumes...]', 'volumes (default: every volume)')
    .option('--reset', 'zero the counters after showing them')
    .option('--json', 'JSON output')
    .option('-H', 'scripted mode')
    .option('-p', 'exact numbers')
    .action(async (vols: string[], o: { reset?: boolean; json?: boolean; H?: boolean; p?: boolean }) => {
      const rows = await (await ctx.api()).amplification(vols, { reset: !!o.reset });
      if (o.json) return printJson(rows);
      printTable(
        ['NAME', 'GUEST WRITTEN', 'DEVICE WRITTEN', 'DEVICE READ (WRITES)', 'AMPLIFICATION'],
        rows.map((r) => [r.name, { size: r.guestWriteBytes }, { size: r.deviceWriteBytes }, { size: r.deviceReadBytesForWrites }, r.guestWriteBytes ? `${r.amplification.toFixed(2)}x` : '-']),
        { scripted: o.H, parsable: o.p },
      );
    });
}
