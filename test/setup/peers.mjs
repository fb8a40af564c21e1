#!/usr/bin/env node
// Makes sure the real peers the tests are judged by are installed (Debian packages).
// As root: installs what is missing with apt-get. Otherwise: prints the exact line and stops.
import { execFileSync, spawnSync } from 'node:child_process';

const peers = [
  { pkg: 'qemu-utils', check: ['qemu-img', '--version'] },
  { pkg: 'nbdkit', check: ['nbdkit', '--version'] },
  { pkg: 'libnbd-bin', check: ['nbdinfo', '--version'] },
  { pkg: 'python3-libnbd', check: ['/usr/bin/python3', '-c', 'import nbd'], exact: true },
  { pkg: 'fio', check: ['fio', '--version'] },
  { pkg: 'ceph-common', check: ['rbd', '--version'] },
  { pkg: 'libiscsi-bin', check: ['iscsi-inq', '--help'] },
  { pkg: 'openssl', check: ['openssl', 'version'] },
];

function present(p) {
  const r = spawnSync(p.check[0], p.check.slice(1), { stdio: 'ignore', timeout: 30_000 });
  if (r.error !== undefined) return false;
  return p.exact ? r.status === 0 : r.status !== 127;
}

const missing = peers.filter((p) => !present(p)).map((p) => p.pkg);
if (missing.length === 0) process.exit(0);
const line = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
if (process.getuid && process.getuid() === 0) {
  console.log(`installing test peers: ${missing.join(' ')}`);
  try {
    execFileSync('sh', ['-c', `DEBIAN_FRONTEND=noninteractive ${line}`], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch {
    console.error(`strata: could not install the test peers; run as root: ${line}`);
    process.exit(1);
  }
  const still = peers.filter((p) => !present(p)).map((p) => p.pkg);
  if (still.length) {
    console.error(`strata: test peers still missing after install: ${still.join(' ')}`);
    process.exit(1);
  }
} else {
  console.error(`strata: the tests need these Debian packages. Run as root:\n  ${line}`);
  process.exit(1);
}
