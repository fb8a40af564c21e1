/**
 * Outputs of the snapshot-strategies benchmark: the JSON result, a Markdown
 * report (tables of medians, anomalies first) and hand-written SVG bar
 * charts (no dependencies), all in one directory.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotBenchResult, Stat } from './index.js';
import { MiB, sizeLabel } from './index.js';

// ------------------------------------------------------------------ formatting

export function fmtIops(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}K` : n >= 1000 ? `${(n / 1000).toFixed(2)}K` : n.toFixed(0);
}
export function fmtMs(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : n >= 1000 ? `${(n / 1000).toFixed(2)} s` : n >= 10 ? `${n.toFixed(0)} ms` : `${n.toFixed(1)} ms`;
}
/** Axis ticks: 0, 5K, 10K, 2.5K. */
const fmtTick = (n: number) => (n >= 1000 ? `${+(n / 1000).toFixed(1)}K` : `${+n.toFixed(2)}`);
const fmtX = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '–' : `${n.toFixed(2)}x`);
const fmtMB = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(0));
const fmtMiB = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '–' : (n / MiB).toFixed(0));
const med = (s: Stat | undefined) => s?.median;

// ------------------------------------------------------------------ SVG

const PALETTE = ['#4477AA', '#EE6677', '#228833', '#CCBB44', '#66CCEE', '#AA3377', '#BBBBBB'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export interface BarChart {
  title: string;
  subtitle?: string;
  /** Axis label, e.g. "IOPS" or "ms (log scale)". */
  unit: string;
  categories: string[];
  series: { name: string; values: (number | null | undefined)[] }[];
  log?: boolean;
  /** Horizontal reference lines (e.g. 1x and 3x). */
  refs?: { value: number; label: string }[];
  format?: (v: number) => string;
  /** Axis tick labels (default: format). */
  tickFormat?: (v: number) => string;
}

function niceStep(max: number, ticks = 5): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

/** A grouped vertical bar chart: one group per category, one bar per series, value labels on the bars. */
export function barChart(c: BarChart): string {
  const fmt = c.format ?? ((v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)));
  const tfmt = c.tickFormat ?? fmt;
  const nS = c.series.length;
  const barW = Math.max(14, Math.min(34, Math.floor(150 / Math.max(1, nS))));
  const groupW = Math.max(nS * barW + 26, 118);
  const left = 64;
  const right = 20;
  const width = Math.max(560, left + right + c.categories.length * groupW, left + c.title.length * 8.4 + right, left + (c.subtitle ?? '').length * 5.9 + right);
  // Legend: left-aligned under the title, wrapping.
  const legendItems: { x: number; row: number; name: string; i: number }[] = [];
  {
    let x = left;
    let row = 0;
    c.series.forEach((s, i) => {
      const w = 16 + s.name.length * 6.2 + 14;
      if (x + w > width - right && x > left) {
        row++;
        x = left;
      }
      legendItems.push({ x, row, name: s.name, i });
      x += w;
    });
  }
  const legendRows = legendItems.length ? legendItems[legendItems.length - 1]!.row + 1 : 0;
  const legendTop = c.subtitle ? 52 : 36;
  const top = legendTop + legendRows * 16 + 18;
  const plotH = 240;
  const bottom = 30;
  const height = top + plotH + bottom;
  const all = c.series.flatMap((s) => s.values).filter((v): v is number => typeof v === 'number' && Number.isFinite(v) && (!c.log || v > 0));
  const refVals = (c.refs ?? []).map((r) => r.value);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="bold" fill="#222">${esc(c.title)}</text>`);
  if (c.subtitle) out.push(`<text x="${left}" y="40" font-size="11" fill="#555">${esc(c.subtitle)}</text>`);
  for (const it of legendItems) {
    const y = legendTop + it.row * 16;
    out.push(`<rect x="${it.x.toFixed(1)}" y="${y}" width="11" height="11" fill="${PALETTE[it.i % PALETTE.length]}"/><text x="${(it.x + 15).toFixed(1)}" y="${y + 10}" fill="#333">${esc(it.name)}</text>`);
  }
  const y0 = top + plotH;
  let y: (v: number) => number;
  const ticks: { v: number; label: string }[] = [];
  if (!all.length) {
    y = () => y0;
  } else if (c.log) {
    const lo = Math.floor(Math.log10(Math.min(...all, ...refVals.filter((v) => v > 0)))) - 0;
    const hi = Math.ceil(Math.log10(Math.max(...all, ...refVals)));
    const span = Math.max(1, hi - lo);
    // Bars start at 10^lo / 2 so the smallest value still shows.
    const base = lo - 0.3;
    y = (v: number) => y0 - ((Math.log10(Math.max(v, 10 ** base)) - base) / (hi - base)) * plotH;
    for (let e = lo; e <= lo + span; e++) ticks.push({ v: 10 ** e, label: tfmt(10 ** e) });
  } else {
    const max = Math.max(...all, ...refVals) * 1.12 || 1;
    const step = niceStep(max);
    const top2 = Math.ceil(max / step) * step;
    y = (v: number) => y0 - (v / top2) * plotH;
    for (let v = 0; v <= top2 + step / 2; v += step) ticks.push({ v, label: tfmt(v) });
  }
  for (const t of ticks) {
    const yy = y(t.v).toFixed(1);
    out.push(`<line x1="${left}" x2="${width - right}" y1="${yy}" y2="${yy}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${left - 6}" y="${(Number(yy) + 4).toFixed(1)}" text-anchor="end" fill="#666">${esc(t.label)}</text>`);
  }
  out.push(`<text transform="translate(14 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#444">${esc(c.unit)}</text>`);
  c.categories.forEach((cat, gi) => {
    const gx = left + gi * groupW + (groupW - nS * barW) / 2;
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + si * barW;
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${y0 - 4}" text-anchor="middle" fill="#999">–</text>`);
        return;
      }
      const yy = Math.min(y0 - 1, y(v));
      out.push(`<rect x="${(x + 1).toFixed(1)}" y="${yy.toFixed(1)}" width="${barW - 2}" height="${(y0 - yy).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${esc(`${cat} — ${s.name}: ${fmt(v)}`)}</title></rect>`);
      const label = fmt(v);
      const fs = label.length * 5.6 > barW + 4 ? 8.5 : 10;
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 3).toFixed(1)}" text-anchor="middle" font-size="${fs}" fill="#222">${esc(label)}</text>`);
    });
    out.push(`<text x="${(left + gi * groupW + groupW / 2).toFixed(1)}" y="${y0 + 16}" text-anchor="middle" fill="#222">${esc(cat)}</text>`);
  });
  for (const r of c.refs ?? []) {
    const yy = y(r.value).toFixed(1);
    out.push(`<line x1="${left}" x2="${width - right}" y1="${yy}" y2="${yy}" stroke="#444" stroke-dasharray="5 4"/>`);
    out.push(`<text x="${width - right - 2}" y="${(Number(yy) - 3).toFixed(1)}" text-anchor="end" fill="#444" font-size="10">${esc(r.label)}</text>`);
  }
  out.push(`<line x1="${left}" x2="${width - right}" y1="${y0}" y2="${y0}" stroke="#888"/>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ------------------------------------------------------------------ the charts of a result

export function charts(r: SnapshotBenchResult): { file: string; title: string; svg: string }[] {
  const out: { file: string; title: string; svg: string }[] = [];
  const S = sizeLabel(r.options.size);
  const names = r.targets.map((t) => t.name).filter((n) => r.overwrite[n]);
  if (names.length) {
    out.push({
      file: 'snapshot-strategies-overwrite-iops.svg',
      title: '4 KiB random overwrites before and after a snapshot',
      svg: barChart({
        title: '4 KiB random overwrites, before and after a snapshot',
        subtitle: `fio ioengine=nbd, QD32, ${S} disk, size/8 written per run; medians of ${r.options.rounds}`,
        unit: 'IOPS',
        categories: names,
        series: [
          { name: 'no snapshot', values: names.map((n) => med(r.overwrite[n]!.iopsBefore)) },
          { name: 'first overwrites after a snapshot', values: names.map((n) => med(r.overwrite[n]!.iopsAfter)) },
        ],
        format: fmtIops,
        tickFormat: fmtTick,
      }),
    });
  }
  const amp = Object.keys(r.amplification);
  if (amp.length) {
    out.push({
      file: 'snapshot-strategies-amplification.svg',
      title: 'Device I/O per guest byte written',
      svg: barChart({
        title: 'Write amplification: device bytes per guest byte written',
        subtitle: `(written + read for writes) / guest; whole blocks (${r.coldCache ? 'cold ARC' : 'warm ARC'}) and 4 KiB runs (warm); medians of ${r.options.rounds}`,
        unit: 'amplification (x)',
        categories: amp,
        series: [
          { name: 'blocks, no snapshot', values: amp.map((n) => med(r.amplification[n]!.noSnapshot)) },
          { name: 'blocks, first overwrite', values: amp.map((n) => med(r.amplification[n]!.firstOverwrite)) },
          { name: '4K, no snapshot', values: amp.map((n) => med(r.overwrite[n]?.ampBefore)) },
          { name: '4K, first overwrite', values: amp.map((n) => med(r.overwrite[n]?.ampAfter)) },
        ],
        refs: [
          { value: 1, label: '1x' },
          { value: 3, label: '3x' },
        ],
        format: (v) => `${v.toFixed(2)}x`,
        tickFormat: (v) => `${+v.toFixed(2)}x`,
      }),
    });
  }
  const seq = names.filter((n) => r.seqReadFresh[n] || r.fragmentation[n]);
  if (seq.length) {
    out.push({
      file: 'snapshot-strategies-seq-read.svg',
      title: 'Sequential read, fresh and after 50% random overwrites',
      svg: barChart({
        title: 'Sequential read 1 MiB QD16: fresh, and after 50% random overwrites under a snapshot',
        subtitle: `fio ioengine=nbd, ${S} disk, 64 KiB overwrites; medians of ${r.options.rounds}`,
        unit: 'MB/s',
        categories: seq,
        series: [
          { name: 'fresh', values: seq.map((n) => med(r.seqReadFresh[n])) },
          { name: 'after 50% overwrite', values: seq.map((n) => med(r.fragmentation[n]?.seqRead)) },
        ],
        format: (v) => v.toFixed(0),
      }),
    });
  }
  const dn = Object.keys(r.depth);
  if (dn.length) {
    const depths = [...new Set(dn.flatMap((n) => Object.keys(r.depth[n]!)))].sort((a, b) => Number(a) - Number(b));
    out.push({
      file: 'snapshot-strategies-depth-read.svg',
      title: 'Random reads against the number of snapshots',
      svg: barChart({
        title: 'Random 4 KiB reads QD32 with 1, 10, 50 snapshots (chain depth)',
        subtitle: `each layer holds size/256 of 4 KiB writes, the head is empty; ${S} disk; medians of ${r.options.rounds}`,
        unit: 'IOPS',
        categories: dn,
        series: depths.map((d) => ({ name: `${d} snapshot${d === '1' ? '' : 's'}`, values: dn.map((n) => med(r.depth[n]![d]?.readIops)) })),
        format: fmtIops,
        tickFormat: fmtTick,
      }),
    });
  }
  const sn = Object.keys(r.sizes);
  if (sn.length) {
    const sizes = [...new Set(sn.flatMap((n) => Object.keys(r.sizes[n]!)))];
    for (const [key, what] of [
      ['createMs', 'create'],
      ['deleteMs', 'delete'],
    ] as const) {
      out.push({
        file: `snapshot-strategies-${what}-time.svg`,
        title: `Snapshot ${what} time against volume size`,
        svg: barChart({
          title: `Snapshot ${what} time against volume size (log scale)`,
          subtitle:
            what === 'create'
              ? 'filled volume; pool: API call through the daemon; qcow2: qemu-img snapshot -c / qemu-img create -b (offline)'
              : 'after 1/16 overwritten; pool: destroy through the daemon; qcow2: qemu-img snapshot -d / qemu-img commit (offline)',
          unit: 'ms (log scale)',
          categories: sn,
          series: sizes.map((s) => ({ name: s, values: sn.map((n) => med(r.sizes[n]![s]?.[key])) })),
          log: true,
          format: (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10_000 ? 0 : 1)}s` : v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)),
        }),
      });
    }
  }
  const points = Object.keys(r.space);
  const spaceNames = names.filter((n) => points.some((p) => r.space[p]![n]));
  if (spaceNames.length) {
    out.push({
      file: 'snapshot-strategies-space.svg',
      title: 'Space used',
      svg: barChart({
        title: 'Space used, snapshots included',
        subtitle: `${S} disk; pool: used; qcow2: allocated bytes of the image files`,
        unit: 'MiB',
        categories: spaceNames,
        series: points.map((p) => ({ name: p, values: spaceNames.map((n) => (r.space[p]![n] ? r.space[p]![n]!.used / MiB : null)) })),
        format: (v) => v.toFixed(0),
      }),
    });
  }
  return out;
}

// ------------------------------------------------------------------ Markdown

function table(head: string[], rows: string[][]): string {
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

export function markdown(r: SnapshotBenchResult, chartList: { file: string; title: string }[] = []): string {
  const S = sizeLabel(r.options.size);
  const o = r.options;
  const out: string[] = [];
  out.push(`# Snapshot strategies: strata native / cow / row vs qcow2`);
  out.push('');
  out.push(
    `${r.date} · ${r.host.cpus} CPUs · node ${r.host.node} · load average ${r.host.loadavgStart.map((x) => x.toFixed(1)).join(' ')} at start, ${r.host.loadavgEnd.map((x) => x.toFixed(1)).join(' ')} at end · ${r.host.fio ?? 'no fio'} · ${r.host.qemuImg ?? 'no qemu-img'}`,
  );
  out.push('');
  out.push(
    `${o.mode}${o.pool ? ` '${o.pool}'` : ''} in ${o.dir} · disk ${S} · ${o.rounds} rounds (targets alternate, order rotates; medians) · time-based jobs ${(o.runtimeMs / 1000).toFixed(1)} s · sizes ${o.sizes.map(sizeLabel).join(', ')} · depths ${o.depths.join(', ')} · ${r.durationSec.toFixed(0)} s in all`,
  );
  out.push('');
  out.push('## Anomalies');
  out.push('');
  out.push(r.anomalies.length ? r.anomalies.map((a) => `- ${a}`).join('\n') : '- none: cow ~3x, native and row ~1x, row reads flat with depth, constant-time snapshot creation.');
  if (r.notes.length) out.push('', r.notes.map((n) => `- note: ${n}`).join('\n'));
  if (r.errors.length) out.push('', '### Errors', '', r.errors.map((e) => `- ${e}`).join('\n'));

  const names = r.targets.map((t) => t.name);
  const depthKeys = [...new Set(Object.values(r.depth).flatMap((d) => Object.keys(d)))].sort((a, b) => Number(a) - Number(b));
  out.push('', '## Summary', '');
  out.push(`fio ioengine=nbd against \`strata serve\` (pool volumes, qcow2 images from its config) and qemu-nbd (--cache=writeback); ${S} disks.`);
  out.push('');
  const fragPoint = Object.keys(r.space).find((p) => p.includes('50%'));
  out.push(
    table(
      [
        'target',
        '4K overwrite IOPS',
        'after snapshot',
        'after/before',
        'seq read MB/s',
        'after 50% overwrite',
        ...depthKeys.map((d) => `read IOPS, ${d} snap${d === '1' ? '' : 's'}`),
        `MiB used (${fragPoint ?? 'snapshot + 50%'})`,
      ],
      names.map((n) => {
        const w = r.overwrite[n];
        const f = r.fragmentation[n];
        return [
          n,
          fmtIops(med(w?.iopsBefore)),
          fmtIops(med(w?.iopsAfter)),
          w ? fmtX(w.iopsAfter.median / w.iopsBefore.median) : '–',
          fmtMB(med(r.seqReadFresh[n])),
          fmtMB(med(f?.seqRead)),
          ...depthKeys.map((d) => fmtIops(med(r.depth[n]?.[d]?.readIops))),
          fragPoint ? fmtMiB(r.space[fragPoint]![n]?.used) : '–',
        ];
      }),
    ),
  );

  if (Object.keys(r.amplification).length) {
    out.push('', '## Write amplification (device I/O per guest byte written)', '');
    out.push(
      `From the pool's per-volume accounting (\`strata get amplification\`): (device bytes written + device bytes read for writes) / guest bytes written, after a txg sync. Whole-block random overwrites (volblocksize, size/8 per pass) with a ${r.coldCache ? 'cold ARC (the daemon restarted before each pass)' : 'warm ARC'}; 4 KiB columns: the overwrite runs of the IOPS test (warm ARC, partial blocks: read-modify-write).`,
    );
    out.push('');
    out.push(
      table(
        ['volume', 'volblocksize', 'blocks, no snapshot', 'blocks, first overwrite', 'device written / read per guest byte', '4K, no snapshot', '4K, first overwrite'],
        Object.entries(r.amplification).map(([n, a]) => {
          const l = a.last?.firstOverwrite;
          return [
            n,
            `${a.volblocksize / 1024}K`,
            fmtX(a.noSnapshot.median),
            `**${fmtX(a.firstOverwrite.median)}**`,
            l ? `${(l.deviceWriteBytes / l.guestWriteBytes).toFixed(2)} / ${(l.deviceReadBytesForWrites / l.guestWriteBytes).toFixed(2)}` : '–',
            fmtX(med(r.overwrite[n]?.ampBefore)),
            fmtX(med(r.overwrite[n]?.ampAfter)),
          ];
        }),
      ),
    );
  }

  out.push('', '## Snapshot create and delete time', '');
  out.push(
    'Pool volumes: the API call through the running daemon (live, while served). qcow2: the qemu-img command alone (offline: the server is stopped first; its restart is not counted); external snapshots are deleted by committing the active overlay into its backing file (`qemu-img commit`). Delete follows 1/16 of the volume overwritten in random 64 KiB writes (the IOPS test: size/8 in 4 KiB writes; fragmentation: size/2).',
  );
  out.push('');
  const sn = Object.keys(r.sizes);
  const sizes = [...new Set(sn.flatMap((n) => Object.keys(r.sizes[n]!)))];
  if (sn.length) {
    out.push(
      table(
        ['target', ...sizes.map((s) => `create ${s}`), ...sizes.map((s) => `delete ${s}`)],
        sn.map((n) => [n, ...sizes.map((s) => fmtMs(med(r.sizes[n]![s]?.createMs))), ...sizes.map((s) => fmtMs(med(r.sizes[n]![s]?.deleteMs)))]),
      ),
    );
    out.push('');
  }
  out.push(`At ${S}: create and delete around the IOPS test; delete of the fragmentation test's snapshot; create while building the chain (right after a layer's writes, so it includes committing them; median over the snapshots added up to that depth).`);
  out.push('');
  out.push(
    table(
      ['target', `create (${S}, IOPS test)`, 'delete after size/8 4K writes', 'delete after 50% overwrite', ...depthKeys.map((d) => `create at depth ≤${d}`)],
      names.map((n) => [
        n,
        fmtMs(med(r.overwrite[n]?.createMs)),
        fmtMs(med(r.overwrite[n]?.deleteMs)),
        fmtMs(r.fragmentation[n]?.deleteMs),
        ...depthKeys.map((d) => fmtMs(med(r.depth[n]?.[d]?.createMs))),
      ]),
    ),
  );

  const points = Object.keys(r.space);
  if (points.length) {
    out.push('', '## Space used', '');
    out.push('MiB on the storage, snapshots included (in parentheses: held for snapshots only; pool: usedbysnapshots, qcow2-ext: the backing files; internal qcow2 snapshots share the one file).');
    out.push('');
    out.push(
      table(
        ['target', ...points],
        names.map((n) => [n, ...points.map((p) => (r.space[p]![n] ? `${fmtMiB(r.space[p]![n]!.used)} (${fmtMiB(r.space[p]![n]!.snapshots)})` : '–'))]),
      ),
    );
    const checks = Object.entries(r.poolCheck);
    if (checks.length) {
      out.push('', `Pool check (temporary pool): ${checks.map(([p, c]) => `${p}: pool alloc ${fmtMiB(c.poolAlloc)} MiB vs volumes' used ${fmtMiB(c.sumUsed)} MiB`).join('; ')}.`);
    }
  }
  if (chartList.length) {
    out.push('', '## Charts', '');
    for (const c of chartList) out.push(`![${c.title}](${c.file})`, '');
  }
  out.push('', '## Method', '');
  out.push(
    [
      `1. Every disk is ${S}, filled sequentially with incompressible data (pool volumes through NBD with fio; qcow2 images converted from a random raw file).`,
      '2. 4 KiB random overwrites QD32, a fixed amount (size/8, fio random map: no block twice) with no snapshot, then a snapshot, then the same writes again (first overwrites), then the snapshot is deleted; per round, targets alternate.',
      '3. Pool volumes only: whole-block random overwrites (size/8) without a snapshot and again after one; the counters are reset before and read after a txg sync.',
      '4. A snapshot, 50% of the disk overwritten in random 64 KiB writes, sequential 1 MiB reads QD16 (time-based); then the snapshot is deleted.',
      `5. Layers: size/256 of random 4 KiB writes then a snapshot, repeated up to ${r.options.depths.join(', ')} snapshots (the head is empty, reads fall through); random 4 KiB reads QD32 (time-based). qcow2 layers are written offline with qemu-io.`,
      '6. Per size: fill, then per round: snapshot (timed), 1/16 overwritten, delete (timed).',
    ].join('\n'),
  );
  return out.join('\n') + '\n';
}

/** Write JSON, Markdown and SVGs into `dir`; returns the paths. */
export async function writeOutputs(r: SnapshotBenchResult, dir: string): Promise<{ json: string; md: string; svgs: string[] }> {
  await mkdir(dir, { recursive: true });
  const cs = charts(r);
  const json = join(dir, 'snapshot-strategies.json');
  const md = join(dir, 'snapshot-strategies.md');
  await writeFile(json, JSON.stringify(r, null, 2) + '\n');
  const svgs: string[] = [];
  for (const c of cs) {
    const p = join(dir, c.file);
    await writeFile(p, c.svg);
    svgs.push(p);
  }
  await writeFile(md, markdown(r, cs));
  return { json, md, svgs };
}
