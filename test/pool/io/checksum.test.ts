import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { StorageError } from '../../../src/errors.js';
import {
  CHECKSUM_SIZE, checksumEquals, computeChecksum, parseChecksum, verifyChecksum,
} from '../../../src/pool/io/checksum.js';
import { fletcher4Js } from '../../../src/pool/io/fletcher4.js';

describe('checksum', () => {
  it('returns 32 bytes for every type', () => {
    const data = randomBytes(4096);
    expect(computeChecksum('fletcher4', data)).toHaveLength(CHECKSUM_SIZE);
    expect(computeChecksum('sha256', data)).toHaveLength(CHECKSUM_SIZE);
  });

  it('sha256 is the standard digest; fletcher4 matches the JS path', () => {
    const data = randomBytes(16384);
    expect(computeChecksum('sha256', data)).toEqual(createHash('sha256').update(data).digest());
    expect(computeChecksum('fletcher4', data)).toEqual(fletcher4Js(data));
    // NIST vector for "abc"
    expect(computeChecksum('sha256', Buffer.from('abc')).toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('returns a fresh buffer each time', () => {
    const data = randomBytes(512);
    const a = computeChecksum('fletcher4', data);
    const b = computeChecksum('fletcher4', randomBytes(512));
    expect(checksumEquals(a, computeChecksum('fletcher4', data))).toBe(true);
    expect(checksumEquals(a, b)).toBe(false);
  });

  it('detects a single flipped bit', () => {
    const data = randomBytes(4096);
    for (const type of ['fletcher4', 'sha256'] as const) {
      const sum = computeChecksum(type, data);
      const bad = Buffer.from(data);
      bad[1234]! ^= 0x10;
      expect(verifyChecksum(type, data, sum)).toBe(true);
      expect(verifyChecksum(type, bad, sum)).toBe(false);
    }
  });

  it('checksumEquals compares length and bytes', () => {
    expect(checksumEquals(Buffer.alloc(32), Buffer.alloc(32))).toBe(true);
    expect(checksumEquals(Buffer.alloc(32), Buffer.alloc(31))).toBe(false);
    const x = Buffer.alloc(32);
    x[31] = 1;
    expect(checksumEquals(Buffer.alloc(32), x)).toBe(false);
  });

  it('parseChecksum accepts the names and on, rejects the rest with EINVAL', () => {
    expect(parseChecksum('on')).toBe('fletcher4');
    expect(parseChecksum('fletcher4')).toBe('fletcher4');
    expect(parseChecksum('sha256')).toBe('sha256');
    for (const bad of ['', 'off', 'fletcher2', 'SHA256']) {
      expect(() => parseChecksum(bad)).toThrow(StorageError);
      try { parseChecksum(bad); } catch (e) { expect((e as StorageError).code).toBe('EINVAL'); }
    }
  });

  it('fletcher4 of a length not a multiple of 4 is EINVAL', () => {
    expect(() => computeChecksum('fletcher4', Buffer.alloc(6))).toThrow(/multiple of 4/);
  });
});
