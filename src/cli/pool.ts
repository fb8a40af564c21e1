/** `strata pool ...`: create, list, status, destroy, export, import, history. */
import type { Command } from 'commander';
import { err } from '../errors.js';
import { parseSize } from '../pool/dataset/units.js';
import type { CreateSpec, VdevGroupSpec } from '../pool/txg/open.js';
import type { CliContext } from './context.js';
import { printJson, printTable } from './output.js';
import { registerPoolDeviceCommands } from './pool-devices.js';

/** Parse `[mirror|raidz|raidz2|raidz3] DEV... [log ...] [cache DEV...] [spare DEV...]` like zpool. */
export function parseVdevSpec(words: string[]): Pick<CreateSpec, 'groups' | 'log' | 'cache' | 'spares'> {
  const groups: VdevGroupSpec[] = [];
  const log: VdevGroupSpec[] = [];
  const cache: string[] = [];
  const spares: string[] = [];
  let section: 'data' | 'log' | 'cache' | 'spare' = 'data';
  let cur: VdevGroupSpec | null = null;
  const target = () => (section === 'log' ? log : groups);
  for (const w of words) {
    if (w === 'log' || w === 'cache' || w === 'spare') {
      section = w;
      cur = null;
      continue;
    }
    if (section === 'cache') {
      cache.push(w);
      continue;
    }
    if (section === 'spare') {
      spares.push(w);
      continue;
    }
    const m = /^(mirror|raidz([123])?)$/.exec(w);
    if (m) {
      cur = m[1] === 'mirror' ? { type: 'mirror', paths: [] } : { type: 'raidz', nparity: Number(m[2] ?? 1) as 1 | 2 | 3, paths: [] };
      target().push(cur);
      continue;
    }
    if (cur) cur.paths.push(w);
    else target().push({ type: 'single', paths: [w] });
  }
  for (const g of [...groups, ...log]) if (g.paths.length === 0) throw err.inval(`${g.type} needs devices`);
  if (groups.length === 0) throw err.inval('pool create: no devices given');
  return { groups, log, cache, spares };
}

export function registerPoolCommands(program: Command, ctx: CliContext): void {
  const pool = program.command('pool').description('manage storage pools (like zpool)');

  pool
    .command('create')
    .description('create a pool on devices or files')
    .argument('<pool>')
    .argument('<vdevs...>', '[mirror|raidz|raidz2|raidz3] DEV... [log DEV...] [cache DEV...] [spare DEV...]')
    .option('-f, --force', 'use devices that belong to another (exported) pool')
    .option('-s, --size <size>', 'create missing device files, sparse, with this size')
    .action(async (name: string, vdevs: string[], o: { force?: boolean; size?: string }) => {
      const spec: CreateSpec = { ...parseVdevSpec(vdevs), force: !!o.force };
      if (o.size !== undefined) spec.createSize = parseSize(o.size);
      await (await ctx.api()).poolCreate(name, spec);
    });

  pool
    .command('list')
    .description('list pools: NAME SIZE ALLOC FREE CAP HEALTH')
    .argument('[pools...]')
    .option('-H', 'scripted mode: no header, tab-separated')
    .option('-p', 'exact numbers')
    .option('--json', 'JSON output')
    .action(async (names: string[], o: { H?: boolean; p?: boolean; json?: boolean }) => {
      const rows = await (await ctx.api()).poolList(names);
      if (o.json) return printJson(rows);
      printTable(
        ['NAME', 'SIZE', 'ALLOC', 'FREE', 'CAP', 'HEALTH'],
        rows.map((r) => [r.name, { size: r.size }, { size: r.alloc }, { size: r.free }, { pct: r.cap }, r.health]),
        { scripted: o.H, parsable: o.p },
        new Set([1, 2, 3, 4]),
      );
    });

  // status, scrub, wait, attach, detach, replace, offline, online, clear, iostat
  registerPoolDeviceCommands(pool, ctx);

  pool
    .command('destroy')
    .description('destroy a pool (its devices become free)')
    .argument('<pool>')
    .option('-f, --force', 'even if volumes are in use')
    .action(async (name: string) => (await ctx.api()).poolDestroy(name));

  pool
    .command('export')
    .description('sync and release a pool so it can be imported elsewhere')
    .argument('<pool>')
    .action(async (name: string) => (await ctx.api()).poolExport(name));

  pool
    .command('import')
    .description('list importable pools, or import one')
    .argument('[pool]', 'name or guid')
    .option('-d <dir>', 'search this directory for devices (default: HOME/devices)')
    .action(async (name: string | undefined, o: { d?: string }) => {
      const api = await ctx.api();
      if (!name) {
        const found = await api.poolScan(o.d);
        if (found.length === 0) {
          process.stdout.write('no pools available to import\n');
          return;
        }
        for (const f of found) {
          process.stdout.write(`   pool: ${f.name}\n     id: ${BigInt('0x' + f.guid)}\n  state: ${f.state === 'exported' ? 'ONLINE' : f.state}\n devices:\n`);
          for (const d of f.devices) process.stdout.write(`\t${d}\n`);
        }
        return;
      }
      const byNumber = /^\d+$/.test(name) ? BigInt(name).toString(16).padStart(16, '0') : name;
      await api.poolImport(byNumber, o.d);
    });

  pool
    .command('history')
    .description('commands that changed the pool')
    .argument('<pool>')
    .action(async (name: string) => {
      const h = await (await ctx.api()).history(name);
      process.stdout.write(`History for '${name}':\n`);
      for (const e of h) {
        const d = new Date(e.time);
        const p = (n: number) => String(n).padStart(2, '0');
        const ts = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}.${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
        process.stdout.write(`${ts} ${e.command}\n`);
      }
    });
}
