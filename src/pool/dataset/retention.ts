/**
 * Scheduled snapshots with retention: the generations scheme of FreeBSD's
 * periodic-snapshot scripts (and zfs-auto-snapshot). Pure: no pool, no
 * clock; callers pass the time and the snapshots that exist.
 *
 * Policy (dataset property `snapshot:policy`, inherited down the tree):
 *   `hourly=24,daily=7,weekly=4` — how many snapshots of each generation
 *   to keep. Generations: frequent (every 15 min), hourly, daily, weekly
 *   (Mondays), monthly (the 1st). `off` (or `none`) disables. A generation
 *   not named is left alone; `=0` keeps none of it.
 *
 * Names: `auto-<generation>-YYYY-MM-DD-HHMM`, the UTC start of the period
 * the snapshot stands for (`auto-hourly-2026-11-23-1200`). So a run is
 * idempotent: a second run in the same period finds the name taken and
 * takes nothing, and a missed period is simply skipped (no catch-up burst).
 *
 * Expiry: per generation, the newest `keep` auto snapshots stay (counting
 * one taken now); older ones are destroyed unless held or cloned, which
 * ZFS would refuse anyway: they stay and are retried on later runs.
 */
import { err } from '../../errors.js';

export const GENERATIONS = ['frequent', 'hourly', 'daily', 'weekly', 'monthly'] as const;
export type Generation = (typeof GENERATIONS)[number];
export type Policy = Partial<Record<Generation, number>>;

export const POLICY_PROP = 'snapshot:policy';
const MAX_KEEP = 10_000;

/** Parse a policy value; null means off. Throws EINVAL with a one-line reason. */
export function parsePolicy(value: string): Policy | null {
  const v = value.trim();
  if (v === '' || v === 'off' || v === 'none' || v === '-') return null;
  const out: Policy = {};
  for (const part of v.split(',')) {
    const m = /^([a-z]+)=(\d+)$/.exec(part.trim());
    if (!m) throw err.inval(`invalid snapshot policy '${value}': expected GENERATION=COUNT[,...] (e.g. hourly=24,daily=7,weekly=4) or off`);
    const g = m[1] as Generation;
    if (!GENERATIONS.includes(g)) throw err.inval(`invalid snapshot policy '${value}': unknown generation '${m[1]}' (use ${GENERATIONS.join(', ')})`);
    if (g in out) throw err.inval(`invalid snapshot policy '${value}': '${g}' given twice`);
    const n = Number(m[2]);
    if (n > MAX_KEEP) throw err.inval(`invalid snapshot policy '${value}': keep at most ${MAX_KEEP} of a generation`);
    out[g] = n;
  }
  return out;
}

/** Canonical text of a policy (generations in order). */
export function formatPolicy(p: Policy | null): string {
  if (!p) return 'off';
  const parts = GENERATIONS.filter((g) => p[g] !== undefined).map((g) => `${g}=${p[g]}`);
  return parts.length ? parts.join(',') : 'off';
}

/** UTC start of the period of generation `g` that contains `now` (ms). */
export function slotStart(g: Generation, now: number): number {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  const day = d.getUTCDate();
  switch (g) {
    case 'frequent':
      return Date.UTC(y, mo, day, d.getUTCHours(), Math.floor(d.getUTCMinutes() / 15) * 15);
    case 'hourly':
      return Date.UTC(y, mo, day, d.getUTCHours());
    case 'daily':
      return Date.UTC(y, mo, day);
    case 'weekly': {
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      return Date.UTC(y, mo, day - sinceMonday);
    }
    case 'monthly':
      return Date.UTC(y, mo, 1);
  }
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

export function autoName(g: Generation, slot: number): string {
  const d = new Date(slot);
  return `auto-${g}-${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}`;
}

/** The generation and period start of an auto snapshot name, or null for any other name. */
export function parseAutoName(name: string): { gen: Generation; time: number } | null {
  const m = /^auto-([a-z]+)-(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})$/.exec(name);
  if (!m || !GENERATIONS.includes(m[1] as Generation)) return null;
  const time = Date.UTC(Number(m[2]), Number(m[3]) - 1, Number(m[4]), Number(m[5]), Number(m[6]));
  if (Number.isNaN(time) || autoName(m[1] as Generation, time) !== name) return null;
  return { gen: m[1] as Generation, time };
}

export interface ExistingSnapshot {
  /** Short name (after '@'). */
  name: string;
  held: boolean;
  cloned: boolean;
}

export interface RetentionPlan {
  /** Short names to take now. */
  take: string[];
  /** Short names to destroy (expired, neither held nor cloned). */
  destroy: string[];
  /** Expired but kept: held or cloned. */
  kept: { name: string; why: 'held' | 'cloned' }[];
}

/** What a run at `now` does for one dataset with this policy and these snapshots. */
export function plan(policy: Policy | null, existing: ExistingSnapshot[], now: number): RetentionPlan {
  const out: RetentionPlan = { take: [], destroy: [], kept: [] };
  if (!policy) return out;
  const names = new Set(existing.map((s) => s.name));
  for (const g of GENERATIONS) {
    const keep = policy[g];
    if (keep === undefined) continue;
    const slot = slotStart(g, now);
    const mine = existing
      .map((s) => ({ s, a: parseAutoName(s.name) }))
      .filter((x): x is { s: ExistingSnapshot; a: { gen: Generation; time: number } } => !!x.a && x.a.gen === g)
      .map((x) => ({ name: x.s.name, time: x.a.time, held: x.s.held, cloned: x.s.cloned }));
    const name = autoName(g, slot);
    if (keep > 0 && !names.has(name)) {
      out.take.push(name);
      mine.push({ name, time: slot, held: false, cloned: false });
    }
    mine.sort((a, b) => b.time - a.time);
    for (const x of mine.slice(keep)) {
      if (x.held) out.kept.push({ name: x.name, why: 'held' });
      else if (x.cloned) out.kept.push({ name: x.name, why: 'cloned' });
      else out.destroy.push(x.name);
    }
  }
  return out;
}
