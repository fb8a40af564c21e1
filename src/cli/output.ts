/**
 * Table output like zfs/zpool: aligned columns with a header, or with -H
 * tab-separated and headerless (for scripts); -p prints exact numbers.
 */
import { formatSize } from '../pool/dataset/units.js';

export interface TableOptions {
  scripted?: boolean; // -H
  parsable?: boolean; // -p
}

export type Cell = string | number | null | { size: number } | { pct: number };

export function cellText(c: Cell, parsable: boolean): string {
  if (c === null || c === undefined) return '-';
  if (typeof c === 'object' && 'size' in c) return parsable ? String(c.size) : formatSize(c.size);
  if (typeof c === 'object' && 'pct' in c) return parsable ? String(c.pct) : `${c.pct}%`;
  return String(c);
}

export function printTable(headers: string[], rows: Cell[][], opts: TableOptions = {}, rightAligned: Set<number> = new Set()): void {
  const text = rows.map((r) => r.map((c) => cellText(c, !!opts.parsable)));
  if (opts.scripted) {
    for (const r of text) process.stdout.write(r.join('\t') + '\n');
    return;
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 && !rightAligned.has(i) ? c : rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ');
  process.stdout.write(line(headers) + '\n');
  for (const r of text) process.stdout.write(line(r) + '\n');
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
