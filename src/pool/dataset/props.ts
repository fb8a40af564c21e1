/**
 * Dataset properties: definitions, validation and inheritance.
 *
 * Source of a value, as `zfs get` shows it: 'local' (set here), 'inherited
 * from X', 'default', or '-' for read-only statistics. Only inheritable
 * properties look up the tree.
 */
import { err } from '../../errors.js';
import { parseSize } from './units.js';
import { formatPolicy, parsePolicy, POLICY_PROP } from './retention.js';

export type PropValue = string;

export interface PropDef {
  name: string;
  inherit: boolean;
  /** Applies to volumes only / settable only at creation. */
  volumeOnly?: boolean;
  createOnly?: boolean;
  readOnly?: boolean;
  default: string;
  /** Normalize and validate a user value; throws EINVAL. */
  parse(v: string): string;
}

const choice = (name: string, values: string[], alias: Record<string, string> = {}) => (v: string) => {
  const x = alias[v] ?? v;
  if (!values.includes(x)) throw err.inval(`invalid value '${v}' for property '${name}': expected one of ${values.join(', ')}`);
  return x;
};

const COMPRESSIONS = ['off', 'lz4', 'zle', ...Array.from({ length: 9 }, (_, i) => `gzip-${i + 1}`)];

function blockSizeProp(v: string): string {
  const n = parseSize(v);
  if (n < 4096 || n > 131072 || (n & (n - 1)) !== 0) throw err.inval(`invalid value '${v}' for property 'volblocksize': must be a power of 2 from 4K to 128K`);
  return String(n);
}

function depthProp(v: string): string {
  if (!/^\d+$/.test(v) || Number(v) > 65000) throw err.inval(`invalid value '${v}' for property 'compactdepth': expected 0 (off) or a chain depth of 1 to 65000`);
  return String(Number(v));
}

function sizeOrNone(name: string) {
  return (v: string) => {
    if (v === 'none') return 'none';
    if (v === 'auto' && name === 'refreservation') return 'auto';
    const n = parseSize(v);
    return String(n);
  };
}

export const PROPS: Record<string, PropDef> = {
  compression: { name: 'compression', inherit: true, default: 'lz4', parse: choice('compression', COMPRESSIONS, { on: 'lz4', gzip: 'gzip-6' }) },
  checksum: { name: 'checksum', inherit: true, default: 'fletcher4', parse: choice('checksum', ['fletcher4', 'sha256'], { on: 'fletcher4' }) },
  copies: { name: 'copies', inherit: true, default: '1', parse: choice('copies', ['1', '2', '3']) },
  readonly: { name: 'readonly', inherit: true, default: 'off', parse: choice('readonly', ['on', 'off']) },
  sync: { name: 'sync', inherit: true, default: 'standard', parse: choice('sync', ['standard', 'always', 'disabled']) },
  snapmode: { name: 'snapmode', inherit: true, createOnly: true, default: 'native', parse: choice('snapmode', ['native', 'cow', 'row']) },
  // row volumes: keep the layer chain at most this deep by merging the oldest layers (0 = off; src/snapshot/compact.ts).
  compactdepth: { name: 'compactdepth', inherit: true, default: '0', parse: depthProp },
  volsize: { name: 'volsize', inherit: false, volumeOnly: true, default: '0', parse: (v) => String(parseSize(v)) },
  volblocksize: { name: 'volblocksize', inherit: false, volumeOnly: true, createOnly: true, default: '16384', parse: blockSizeProp },
  refreservation: { name: 'refreservation', inherit: false, default: 'none', parse: sizeOrNone('refreservation') },
  reservation: { name: 'reservation', inherit: false, default: 'none', parse: sizeOrNone('reservation') },
  quota: { name: 'quota', inherit: false, default: 'none', parse: sizeOrNone('quota') },
  description: { name: 'description', inherit: false, default: '', parse: (v) => v },
};

/** Read-only statistics computed by the dataset layer. */
export const STAT_PROPS = [
  'type',
  'creation',
  'used',
  'available',
  'referenced',
  'logicalused',
  'logicalreferenced',
  'compressratio',
  'usedbydataset',
  'usedbychildren',
  'usedbyrefreservation',
  'usedbysnapshots',
  'guid',
  'name',
  'createtxg',
] as const;

export function isUserProp(name: string): boolean {
  return /^[a-z0-9_.-]+:[a-z0-9_.:-]+$/i.test(name);
}

export function parseProp(name: string, value: string, opts: { creating: boolean; isVolume: boolean }): string {
  if (isUserProp(name)) {
    if (value.length > 8192) throw err.inval(`value of user property '${name}' is too long`);
    // The snapshot schedule is a user property that strata itself reads: validate and normalize it.
    if (name === POLICY_PROP) return formatPolicy(parsePolicy(value));
    return value;
  }
  const def = PROPS[name];
  if (!def) {
    if ((STAT_PROPS as readonly string[]).includes(name)) throw err.inval(`property '${name}' is read-only`);
    throw err.inval(`invalid property '${name}'`);
  }
  if (def.createOnly && !opts.creating) throw err.inval(`property '${name}' can only be set at creation time`);
  if (def.volumeOnly && !opts.isVolume) throw err.inval(`property '${name}' applies only to volumes`);
  return def.parse(value);
}
