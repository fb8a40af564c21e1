import { describe, expect, it } from 'vitest';
import { Directory } from '../../../src/pool/dataset/directory.js';
import { parseProp } from '../../../src/pool/dataset/props.js';
import { StorageError } from '../../../src/errors.js';

function tree(): Directory {
  const d = new Directory();
  d.add('tank', 'filesystem', 1, {}, null);
  d.add('tank/a', 'filesystem', 1, { compression: 'gzip-6', 'org:owner': 'alice' }, null);
  d.add('tank/a/b', 'filesystem', 1, { checksum: 'sha256' }, null);
  d.add('tank/a/b/vol', 'volume', 1, { volsize: '65536', volblocksize: '16384', refreservation: '65536' }, null);
  return d;
}

describe('Directory property inheritance', () => {
  it('shows local, inherited from X, and default', () => {
    const d = tree();
    expect(d.resolve('tank/a', 'compression')).toEqual({ value: 'gzip-6', source: 'local' });
    expect(d.resolve('tank/a/b/vol', 'compression')).toEqual({ value: 'gzip-6', source: 'inherited from tank/a' });
    expect(d.resolve('tank/a/b/vol', 'checksum')).toEqual({ value: 'sha256', source: 'inherited from tank/a/b' });
    expect(d.resolve('tank/a/b/vol', 'copies')).toEqual({ value: '1', source: 'default' });
    expect(d.resolve('tank', 'compression')).toEqual({ value: 'lz4', source: 'default' });
  });

  it('non-inheritable properties never come from a parent', () => {
    const d = tree();
    d.get('tank/a/b').props['refreservation'] = '4096';
    expect(d.resolve('tank/a/b/vol', 'refreservation')).toEqual({ value: '65536', source: 'local' });
    d.add('tank/a/b/other', 'filesystem', 1, {}, null);
    expect(d.resolve('tank/a/b/other', 'refreservation')).toEqual({ value: 'none', source: 'default' });
  });

  it('user properties inherit; unknown ones are "-"', () => {
    const d = tree();
    expect(d.resolve('tank/a/b/vol', 'org:owner')).toEqual({ value: 'alice', source: 'inherited from tank/a' });
    expect(d.resolve('tank', 'org:owner')).toEqual({ value: '-', source: '-' });
  });

  it('propValue is resolve().value for every kind of property and dataset', () => {
    const d = tree();
    d.get('tank/a/b').props['refreservation'] = '4096';
    d.add('tank/a/b/other', 'filesystem', 1, {}, null);
    for (const name of ['tank', 'tank/a', 'tank/a/b', 'tank/a/b/vol', 'tank/a/b/other', 'tank/missing/child']) {
      for (const prop of ['compression', 'checksum', 'copies', 'refreservation', 'readonly', 'sync', 'org:owner', 'org:none']) {
        expect(d.propValue(name, prop), `${name} ${prop}`).toBe(d.resolve(name, prop).value);
      }
    }
  });

  it('rename moves descendants; inheritance follows the new parent', () => {
    const d = tree();
    d.add('tank/c', 'filesystem', 1, { compression: 'zle' }, null);
    d.rename('tank/a/b', 'tank/c/b');
    expect(d.has('tank/a/b/vol')).toBe(false);
    expect(d.resolve('tank/c/b/vol', 'compression')).toEqual({ value: 'zle', source: 'inherited from tank/c' });
    expect(d.resolve('tank/c/b/vol', 'checksum')).toEqual({ value: 'sha256', source: 'inherited from tank/c/b' });
  });

  it('refuses duplicates, missing parents and children of volumes', () => {
    const d = tree();
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as StorageError).code;
      }
      return undefined;
    };
    expect(code(() => d.add('tank/a', 'filesystem', 1, {}, null))).toBe('EEXIST');
    expect(code(() => d.add('tank/x/y', 'filesystem', 1, {}, null))).toBe('ENOENT');
    expect(code(() => d.add('tank/a/b/vol/x', 'filesystem', 1, {}, null))).toBe('EINVAL');
  });

  it('property values are validated', () => {
    const bad = (k: string, v: string, isVolume = true) => expect(() => parseProp(k, v, { creating: true, isVolume })).toThrow(StorageError);
    bad('copies', '4');
    bad('volblocksize', '3K');
    bad('volblocksize', '256K');
    bad('compression', 'foo');
    bad('checksum', 'md5');
    bad('volsize', '1M', false);
    bad('used', '1');
    bad('nosuchprop', 'x');
    expect(parseProp('compression', 'on', { creating: true, isVolume: true })).toBe('lz4');
    expect(parseProp('volblocksize', '8K', { creating: true, isVolume: true })).toBe('8192');
    expect(() => parseProp('volblocksize', '8K', { creating: false, isVolume: true })).toThrow(/creation/);
  });
});
