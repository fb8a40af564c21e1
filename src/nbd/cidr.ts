/**
 * Client address matching for NbdExport.allowedClients.
 * Accepts "a.b.c.d", "a.b.c.d/n", IPv6 "x::y", "x::y/n"; IPv4-mapped IPv6
 * peers (::ffff:a.b.c.d, what a dual-stack socket reports) match IPv4 rules.
 */
import { isIPv4, isIPv6 } from 'node:net';

function v4ToBigInt(a: string): bigint {
  return a.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
}

function v6ToBigInt(a: string): bigint {
  // Embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (m) {
    const v4 = v4ToBigInt(m[2]!);
    a = `${m[1]}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].reduce((acc, p) => (acc << 16n) | BigInt(parseInt(p || '0', 16)), 0n);
}

interface Parsed {
  v6: boolean;
  value: bigint;
}

function parseAddress(addr: string): Parsed | null {
  const a = addr.replace(/%.*$/, ''); // zone id
  if (isIPv4(a)) return { v6: false, value: v4ToBigInt(a) };
  if (isIPv6(a)) {
    const value = v6ToBigInt(a);
    // ::ffff:0:0/96 is an IPv4 peer on a dual-stack socket.
    if (value >> 32n === 0xffffn) return { v6: false, value: value & 0xffffffffn };
    return { v6: true, value };
  }
  return null;
}

/** Throws on a malformed rule so a bad config fails loudly at startup rather than refusing everyone. */
export function parseCidr(rule: string): { v6: boolean; value: bigint; bits: number } {
  const [addr, len] = rule.trim().split('/');
  const p = parseAddress(addr ?? '');
  if (!p) throw new Error(`invalid address in client rule '${rule}'`);
  const max = p.v6 ? 128 : 32;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`invalid prefix length in client rule '${rule}'`);
  return { ...p, bits };
}

export function addressAllowed(remote: string, rules: readonly string[] | undefined): boolean {
  if (!rules) return true;
  const r = parseAddress(remote);
  if (!r) return false;
  for (const rule of rules) {
    const c = parseCidr(rule);
    if (c.v6 !== r.v6) continue;
    const width = BigInt(c.v6 ? 128 : 32);
    const shift = width - BigInt(c.bits);
    if (r.value >> shift === c.value >> shift) return true;
  }
  return false;
}
