/**
 * `strata pool status | scrub | wait | attach | detach | replace | offline |
 * online | clear | iostat` (like zpool). Without a daemon the command owns
 * the pool only while it runs, so scrub and resilver run to completion
 * before it returns (an interrupted one resumes at the next open); through
 * a daemon they run in the background unless -w is given.
 */
import type { Command } from 'commander';
import type { PoolStatus, IostatRow } from '../pool/devices.js';
import type { VdevStatusRow } from '../pool/vdev/status.js';
import { formatSize } from '../pool/dataset/units.js';
import type { CliContext } from './context.js';
import { printJson } from './output.js';

function hms(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const p = (n: number) => String(n).padStart(2, '0');
  const days = Math.floor(s / 86400);
  const rest = `${p(Math.floor((s % 86400) / 3600))}:${p(Math.floor((s % 3600) / 60))}:${p(s % 60)}`;
  return days ? `${days} days ${rest}` : rest;
}

function when(t: number): string {
  return new Date(t).toString().replace(/ GMT.*$/, '');
}

/** The `scan:` line(s) of `zpool status`. */
export function scanLine(s: PoolStatus['scan']): string {
  if (!s) return 'none requested';
  const what = s.func === 'scrub' ? 'scrub' : 'resilver';
  if (s.state === 'finished') {
    const verb = s.func === 'scrub' ? `scrub repaired ${formatSize(s.repaired)}` : `resilvered ${formatSize(s.repaired)}`;
    return `${verb} in ${hms(s.activeMs)} with ${s.errors} errors on ${when(s.endTime ?? Date.now())}`;
  }
  if (s.state === 'canceled') return `${what} canceled on ${when(s.endTime ?? Date.now())}`;
  const pct = s.toExamine > 0 ? Math.min(100, (s.examined / s.toExamine) * 100) : 0;
  const head = s.paused ? `${what} paused since ${when(s.startTime)}` : `${what} in progress since ${when(s.startTime)}`;
  const rate = s.rate > 0 ? ` at ${formatSize(s.rate)}/s` : '';
  const eta = s.paused ? 'paused' : s.eta !== null ? `${hms(s.eta * 1000)} to go` : 'no estimated completion time';
  return (
    `${head}\n\t${formatSize(s.examined)} scanned${rate}, ${formatSize(s.issued)} issued, ${formatSize(s.toExamine)} total\n` +
    `\t${formatSize(s.repaired)} ${s.func === 'scrub' ? 'repaired' : 'resilvered'}, ${pct.toFixed(2)}% done, ${eta}`
  );
}

export function formatStatus(p: PoolStatus, verbose: boolean): string {
  let out = `  pool: ${p.name}\n state: ${p.state}\n`;
  if (p.suspended) out += `status: pool I/O is suspended: ${p.suspended}\n`;
  else if (p.status) out += `status: ${p.status}\n`;
  if (p.action) out += `action: ${p.action}\n`;
  out += `  scan: ${scanLine(p.scan)}\nconfig:\n\n`;
  const lines: [string, string, string, string, string, string][] = [];
  const walk = (r: VdevStatusRow, depth: number, stateOverride?: string) => {
    const note = r.note ?? (r.path !== undefined && (r.state === 'UNAVAIL' || r.state === 'REMOVED') ? 'cannot open' : r.state === 'FAULTED' ? 'too many errors' : '');
    lines.push([`${'  '.repeat(depth)}${r.name}`, stateOverride ?? r.state, String(r.read), String(r.write), String(r.cksum), note]);
    for (const c of r.children) walk(c, depth + 1);
  };
  walk(p.config.pool, 0);
  const sections: [string, VdevStatusRow[]][] = [
    ['logs', p.config.logs],
    ['cache', p.config.cache],
    ['spares', p.config.spares],
  ];
  const extra: [number, string][] = [];
  for (const [title, rows] of sections) {
    if (!rows.length) continue;
    extra.push([lines.length, title]);
    for (const r of rows) walk(r, 1);
  }
  const w = Math.max(10, ...lines.map((l) => l[0].length));
  out += `\t${'NAME'.padEnd(w)}  STATE     READ WRITE CKSUM\n`;
  lines.forEach((l, i) => {
    for (const [at, title] of extra) if (at === i) out += `\t${title}\n`;
    const spare = l[1] === 'AVAIL' || l[1] === 'INUSE';
    out += spare
      ? `\t${l[0].padEnd(w)}  ${l[1]}\n`
      : `\t${l[0].padEnd(w)}  ${l[1].padEnd(8)} ${l[2].padStart(5)} ${l[3].padStart(5)} ${l[4].padStart(5)}${l[5] ? '  ' + l[5] : ''}\n`;
  });
  if (!p.errorCount) out += `\nerrors: No known data errors\n`;
  else if (!verbose || !p.errlog) out += `\nerrors: ${p.errorCount} data errors, use '-v' for a list\n`;
  else {
    out += `\nerrors: Permanent errors have been detected in the following volumes:\n\n`;
    for (const e of p.errlog) {
      const name = e.snapshot ? `${e.dataset}@${e.snapshot}` : e.dataset;
      const what = e.level === 0 ? `block ${e.blkid}` : `indirect block L${e.level} over blocks ${e.blkid}-${e.blkid + e.span - 1}`;
      const range = e.blockSize ? `bytes ${e.offset}-${e.offset + e.length - 1} ` : '';
      out += `        ${name}: ${range}(${what})\n`;
    }
  }
  return out;
}

function printIostat(reports: { pool: string; rows: IostatRow[] }[], prev: Map<string, IostatRow> | null, seconds: number): Map<string, IostatRow> {
  const cur = new Map<string, IostatRow>();
  const w = Math.max(10, ...reports.flatMap((r) => r.rows.map((x) => x.name.length + x.depth * 2)));
  let out = `${''.padEnd(w)}    capacity     operations     bandwidth\n`;
  out += `${'pool'.padEnd(w)}  alloc   free   read  write   read  write\n`;
  out += `${'-'.repeat(w)}  -----  -----  -----  -----  -----  -----\n`;
  const n = (x: number) => (x >= 1000 ? formatSize(x).replace('B', '') : String(Math.round(x)));
  for (const r of reports) {
    for (const x of r.rows) {
      const key = `${r.pool}/${x.depth}/${x.name}`;
      cur.set(key, x);
      const p = prev?.get(key);
      const d = (f: 'readOps' | 'writeOps' | 'readBytes' | 'writeBytes') => (p ? (x[f] - p[f]) / seconds : x[f]);
      out +=
        `${('  '.repeat(x.depth) + x.name).padEnd(w)}  ${(x.alloc === null ? '-' : formatSize(x.alloc)).padStart(5)}  ${(x.free === null ? '-' : formatSize(x.free)).padStart(5)}` +
        `  ${n(d('readOps')).padStart(5)}  ${n(d('writeOps')).padStart(5)}  ${formatSize(d('readBytes')).padStart(5)}  ${formatSize(d('writeBytes')).padStart(5)}\n`;
    }
  }
  out += `${'-'.repeat(w)}  -----  -----  -----  -----  -----  -----\n`;
  process.stdout.write(out);
  return cur;
}

export function registerPoolDeviceCommands(pool: Command, ctx: CliContext): void {
  pool
    .command('status')
    .description('show pool health, scrub/resilver progress and the device tree')
    .argument('[pool]')
    .option('-v', 'verbose: list volumes and byte ranges with permanent errors')
    .option('--json', 'JSON output')
    .action(async (name: string | undefined, o: { v?: boolean; json?: boolean }) => {
      const st = await (await ctx.api()).poolStatus(name ?? null, !!o.v);
      if (o.json) return printJson(st);
      process.stdout.write(st.map((p) => formatStatus(p, !!o.v)).join('\n'));
    });

  pool
    .command('scrub')
    .description('verify every block and repair what can be repaired (background with a daemon)')
    .argument('<pool>')
    .option('-s', 'stop (cancel) the scrub')
    .option('-p', 'pause the scrub; `scrub` again resumes')
    .option('-w', 'wait until the scrub finished')
    .action(async (name: string, o: { s?: boolean; p?: boolean; w?: boolean }) => {
      const api = await ctx.api();
      const op = o.s ? 'stop' : o.p ? 'pause' : 'start';
      await api.poolScrub(name, { op, wait: op === 'start' && (!!o.w || !ctx.remote) });
    });

  pool
    .command('wait')
    .description('wait until no scrub or resilver runs')
    .argument('<pool>')
    .action(async (name: string) => (await ctx.api()).poolWait(name));

  pool
    .command('attach')
    .description('mirror NEW onto DEV (a single device becomes a mirror, a mirror gets wider)')
    .argument('<pool>')
    .argument('<dev>')
    .argument('<new>')
    .option('-f', 'use a device that belongs to an exported pool')
    .option('-w', 'wait until the resilver finished')
    .action(async (name: string, dev: string, neu: string, o: { f?: boolean; w?: boolean }) => {
      const api = await ctx.api();
      await api.poolAttach(name, dev, neu, { force: !!o.f, wait: !!o.w || !ctx.remote });
    });

  pool
    .command('detach')
    .description('remove a mirror member, or one side of a replacing/spare device')
    .argument('<pool>')
    .argument('<dev>')
    .action(async (name: string, dev: string) => (await ctx.api()).poolDetach(name, dev));

  pool
    .command('replace')
    .description('replace OLD by NEW (NEW omitted: a new device at the same path) and resilver')
    .argument('<pool>')
    .argument('<old>')
    .argument('[new]')
    .option('-f', 'use a device that belongs to an exported pool')
    .option('-w', 'wait until the resilver finished')
    .action(async (name: string, old: string, neu: string | undefined, o: { f?: boolean; w?: boolean }) => {
      const api = await ctx.api();
      await api.poolReplace(name, old, neu ?? null, { force: !!o.f, wait: !!o.w || !ctx.remote });
    });

  pool
    .command('offline')
    .description('take a device offline (-t: until the next import)')
    .argument('<pool>')
    .argument('<dev>')
    .option('-t', 'temporary: the device comes back at the next import')
    .action(async (name: string, dev: string, o: { t?: boolean }) => (await ctx.api()).poolOffline(name, dev, { temporary: !!o.t }));

  pool
    .command('online')
    .description('bring a device back online and resilver what it missed')
    .argument('<pool>')
    .argument('<dev>')
    .option('-w', 'wait until the resilver finished')
    .action(async (name: string, dev: string, o: { w?: boolean }) => {
      const api = await ctx.api();
      await api.poolOnline(name, dev, { wait: !!o.w || !ctx.remote });
    });

  pool
    .command('clear')
    .description('reset error counters (and the error log) and retry faulted devices')
    .argument('<pool>')
    .argument('[dev]')
    .action(async (name: string, dev: string | undefined) => {
      const api = await ctx.api();
      await api.poolClear(name, dev ?? null, { wait: !ctx.remote });
    });

  pool
    .command('iostat')
    .description('operations and bandwidth per pool (-v: per device) [interval [count]]')
    .argument('[args...]', '[POOL] [interval [count]]')
    .option('-v', 'per device')
    .option('--json', 'JSON output')
    .action(async (args: string[], o: { v?: boolean; json?: boolean }) => {
      const api = await ctx.api();
      const names: string[] = [];
      const nums: number[] = [];
      for (const a of args) (/^\d+(\.\d+)?$/.test(a) ? nums.push(Number(a)) : names.push(a));
      const interval = nums[0];
      const count = nums[1] ?? (interval ? Infinity : 1);
      let prev: Map<string, IostatRow> | null = null;
      for (let i = 0; i < count; i++) {
        const r = await api.poolIostat(names, { verbose: !!o.v });
        if (o.json) printJson(r);
        else prev = printIostat(r, prev, interval ?? 1);
        if (i + 1 < count && interval) await new Promise((res) => setTimeout(res, interval * 1000));
      }
    });
}
