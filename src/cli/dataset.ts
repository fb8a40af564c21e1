/** `strata create|list|get|set|inherit|destroy|rename`: datasets and volumes, like zfs. */
import type { Command } from 'commander';
import { err } from '../errors.js';
import type { CliContext } from './context.js';
import { printJson, printTable, type Cell } from './output.js';
import { collect, commandLine, parseAssignments } from './args.js';
import type { DatasetRow } from '../daemon/services.js';

const SIZE_PROPS = new Set(['used', 'available', 'referenced', 'logicalused', 'logicalreferenced', 'usedbydataset', 'usedbychildren', 'usedbyrefreservation', 'usedbysnapshots', 'volsize', 'volblocksize', 'refreservation', 'reservation', 'quota']);

function propCell(row: DatasetRow, prop: string): Cell {
  switch (prop) {
    case 'name':
      return row.name;
    case 'used':
      return { size: row.used };
    case 'avail':
    case 'available':
      return { size: row.avail };
    case 'refer':
    case 'referenced':
      return { size: row.refer };
    case 'volsize':
      return row.volsize === null ? null : { size: row.volsize };
    case 'type':
      return row.type;
  }
  const p = row.props[prop];
  if (!p) return null;
  if (SIZE_PROPS.has(prop) && /^\d+$/.test(p.value)) return { size: Number(p.value) };
  return p.value;
}

export function registerDatasetCommands(program: Command, ctx: CliContext): void {
  program
    .command('create')
    .description('create a volume (-V SIZE) or a dataset container')
    .argument('<name>', 'POOL/[PATH/]NAME')
    .option('-V <size>', 'volume size (a multiple of the block size)')
    .option('-s', 'sparse volume (no reservation)')
    .option('-b <blocksize>', 'volume block size, 4K..128K (default 16K)')
    .option('-o <prop=value>', 'set a property (repeatable)', collect, [])
    .option('-p', 'create missing parent datasets')
    .action(async (name: string, o: { V?: string; s?: boolean; b?: string; o: string[]; p?: boolean }) => {
      const api = await ctx.api();
      const props = parseAssignments(o.o);
      if (o.s && o.V === undefined) throw err.inval('-s applies only to volumes (-V SIZE)');
      if (o.b && o.V === undefined) throw err.inval('-b applies only to volumes (-V SIZE)');
      // Parents made by -p are removed again if the dataset itself is refused (bad size,
      // property, name...): a refused command changes nothing.
      const made: string[] = [];
      try {
        if (o.p) {
          const parts = name.split('/');
          for (let i = 2; i < parts.length; i++) {
            const parent = parts.slice(0, i).join('/');
            try {
              await api.create(parent, { command: `create ${parent}` });
              made.push(parent);
            } catch (e) {
              if ((e as { code?: string }).code !== 'EEXIST') throw e;
            }
          }
        }
        await api.create(name, { volsize: o.V, sparse: o.s, blocksize: o.b, props, command: commandLine() });
      } catch (e) {
        for (const p of made.reverse()) await api.destroy(p, { command: `destroy ${p}` }).catch(() => {});
        throw e;
      }
    });

  program
    .command('list')
    .description('list datasets: NAME USED AVAIL REFER VOLSIZE')
    .argument('[names...]')
    .option('-r', 'recursive')
    .option('-d <depth>', 'recursion depth')
    .option('-t <type>', 'volume|filesystem|snapshot|all (default: filesystem,volume)', 'filesystem,volume')
    .option('-o <cols>', 'columns, comma separated')
    .option('-H', 'scripted mode: no header, tab-separated')
    .option('-p', 'exact numbers')
    .option('--json', 'JSON output')
    .action(async (names: string[], o: { r?: boolean; d?: string; t: string; o?: string; H?: boolean; p?: boolean; json?: boolean }) => {
      const types = new Set(o.t.split(','));
      for (const t of types) if (!['all', 'volume', 'filesystem', 'snapshot'].includes(t)) throw err.inval(`invalid type '${t}'`);
      const depth = o.d !== undefined ? Number(o.d) : undefined;
      const api = await ctx.api();
      const wantSnaps = types.has('snapshot') || types.has('all') || names.some((n) => n.includes('@'));
      const dsNames = names.filter((n) => !n.includes('@'));
      let rows = names.length && dsNames.length === 0 ? [] : await api.datasets(dsNames, !!o.r || depth !== undefined, depth);
      rows = rows.filter((r) => types.has('all') || types.has(r.type));
      if (wantSnaps) {
        const snaps = await api.snapshotRows(names, !!o.r || depth !== undefined || !names.length);
        if (wantSnaps || names.some((n) => n.includes('@'))) {
          // Like zfs list: snapshots follow their dataset.
          const merged: typeof rows = [];
          const byDs = new Map<string, typeof rows>();
          for (const s of snaps) {
            const ds = s.name.slice(0, s.name.indexOf('@'));
            if (!byDs.has(ds)) byDs.set(ds, []);
            byDs.get(ds)!.push(s);
          }
          for (const r of rows) {
            merged.push(r);
            merged.push(...(byDs.get(r.name) ?? []));
            byDs.delete(r.name);
          }
          for (const rest of byDs.values()) merged.push(...rest);
          rows = merged;
        }
      }
      if (o.json) return printJson(rows.map((r) => ({ name: r.name, type: r.type, used: r.used, avail: r.avail, refer: r.refer, volsize: r.volsize })));
      const cols = o.o ? o.o.split(',') : ['name', 'used', 'avail', 'refer', 'volsize'];
      const right = new Set(cols.map((c, i) => (c === 'name' || c === 'type' ? -1 : i)).filter((i) => i >= 0));
      printTable(
        cols.map((c) => (c === 'avail' || c === 'available' ? 'AVAIL' : c === 'referenced' || c === 'refer' ? 'REFER' : c.toUpperCase())),
        rows.map((r) => cols.map((c) => propCell(r, c))),
        { scripted: o.H, parsable: o.p },
        right,
      );
    });

  program
    .command('get')
    .description('show properties with their source (local, inherited, default)')
    .argument('<props>', "comma-separated properties, or 'all'")
    .argument('[names...]')
    .option('-r', 'recursive')
    .option('-H', 'scripted mode')
    .option('-p', 'exact numbers')
    .option('-o <cols>', 'name,property,value,source')
    .option('--json', 'JSON output')
    .action(async (props: string, names: string[], o: { r?: boolean; H?: boolean; p?: boolean; o?: string; json?: boolean }) => {
      const api = await ctx.api();
      const dsNames = names.filter((n) => !n.includes('@'));
      const rows = [...(dsNames.length || !names.length ? await api.datasets(dsNames, !!o.r) : []), ...(names.some((n) => n.includes('@')) ? await api.snapshotRows(names.filter((n) => n.includes('@')), false) : [])];
      const want = props === 'all' ? null : props.split(',');
      const out: { name: string; property: string; value: Cell; source: string }[] = [];
      for (const r of rows) {
        const list = want ?? Object.keys(r.props);
        for (const p of list) {
          const v = r.props[p];
          if (!v && want && !/:/.test(p) && !['name'].includes(p)) throw err.inval(`invalid property '${p}'`);
          const value: Cell = v ? (SIZE_PROPS.has(p) && /^\d+$/.test(v.value) ? { size: Number(v.value) } : v.value) : p === 'name' ? r.name : null;
          out.push({ name: r.name, property: p, value, source: v?.source ?? '-' });
        }
      }
      if (o.json) return printJson(out.map((x) => ({ ...x, value: typeof x.value === 'object' && x.value ? Object.values(x.value)[0] : x.value })));
      const cols = (o.o ?? 'name,property,value,source').split(',');
      printTable(
        cols.map((c) => c.toUpperCase()),
        out.map((x) => cols.map((c) => (c === 'name' ? x.name : c === 'property' ? x.property : c === 'value' ? x.value : x.source))),
        { scripted: o.H, parsable: o.p },
      );
    });

  program
    .command('set')
    .description('set properties: strata set prop=value... NAME')
    .argument('<args...>', 'prop=value... NAME')
    .action(async (args: string[]) => {
      if (args.length < 2) throw err.inval('usage: strata set prop=value... NAME');
      const name = args[args.length - 1]!;
      await (await ctx.api()).set(name, parseAssignments(args.slice(0, -1)), commandLine());
    });

  program
    .command('inherit')
    .description('clear a local property so it inherits again')
    .argument('<prop>')
    .argument('<names...>')
    .option('-r', 'recursive')
    .action(async (prop: string, names: string[]) => {
      const api = await ctx.api();
      for (const n of names) await api.inherit(n, prop, commandLine());
    });

  program
    .command('destroy')
    .description('destroy a dataset or volume')
    .argument('<name>')
    .option('-r', 'destroy children too')
    .option('-R', 'destroy children and dependents')
    .option('-f', 'even if in use')
    .option('-n', 'dry run')
    .option('-v', 'print what is destroyed')
    .action(async (name: string, o: { r?: boolean; R?: boolean; f?: boolean; n?: boolean; v?: boolean }) => {
      const api = await ctx.api();
      if (name.includes('@')) {
        const r = await api.destroySnapshots(name, { recursiveClones: !!o.R, dryRun: !!o.n, force: !!o.f, command: commandLine() });
        if (o.n || o.v) {
          for (const d of r.destroyed) process.stdout.write(`${o.n ? 'would destroy' : 'will destroy'} ${d}\n`);
          process.stdout.write(`${o.n ? 'would reclaim' : 'will reclaim'} ${o.n && o.v === undefined ? r.reclaim : r.reclaim}\n`);
        }
        return;
      }
      if (o.n) {
        const rows = await api.datasets([name], !!(o.r || o.R));
        for (const r of rows.reverse()) process.stdout.write(`would destroy ${r.name}\n`);
        return;
      }
      const gone = await api.destroy(name, { recursive: !!(o.r || o.R), force: !!o.f, command: commandLine() });
      if (o.v) for (const g of gone) process.stdout.write(`will destroy ${g}\n`);
    });

  program
    .command('rename')
    .description('rename a dataset or volume')
    .argument('<from>')
    .argument('<to>')
    .action(async (from: string, to: string) => (await ctx.api()).rename(from, to, commandLine()));
}
