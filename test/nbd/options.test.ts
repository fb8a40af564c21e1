/**
 * Option-level and command-level behaviour, driven through libnbd's Python
 * binding (/usr/bin/python3): LIST, INFO, GO errors, meta contexts,
 * structured replies, BLOCK_STATUS with REQ_ONE, DF and sparse reads,
 * FAST_ZERO, CACHE, per-export policy (TLS-only, client ranges, limits).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { RawDevice } from '../../formats/raw/index.js';
import { python, serve, tempDir, type Served } from './helpers.js';

const MiB = 1024 * 1024;

describe('NBD options and commands (libnbd)', () => {
  let s: Served;
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let raw: RawDevice;
  const mem = new MemoryDevice(16 * MiB);
  let released = 0;

  beforeAll(async () => {
    tmp = await tempDir('nbd-opt');
    raw = await RawDevice.create(path.join(tmp.dir, 'sparse.raw'), 8 * MiB);
    await mem.write(0, Buffer.alloc(MiB, 0x61));
    await mem.write(4 * MiB, Buffer.alloc(128 * 1024, 0x62));
    s = await serve({
      exports: {
        mem: { device: mem, description: 'memory' },
        raw: { device: raw, release: () => void released++ },
        secret: { device: mem, requireTls: true },
        faraway: { device: mem, allowedClients: ['10.0.0.0/8', 'fd00::/8'] },
        local: { device: mem, allowedClients: ['127.0.0.0/8'] },
        single: { device: mem, maxConnections: 1 },
      },
    });
  });
  afterAll(async () => {
    await s.server.close();
    await raw.close();
    await tmp.cleanup();
  });

  const py = async (body: string) => {
    const r = await python(`import nbd, json, sys
PORT = "${s.port}"
def opt():
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.msgs = []
    h.set_debug_callback(lambda ctx, m: h.msgs.append(m))
    h.set_debug(True)
    h.connect_tcp("127.0.0.1", PORT)
    return h
def server_error(h):
    return [m.split("server error message: ", 1)[1] for m in h.msgs if "server error message: " in m][-1]
def go(name, meta=True):
    h = nbd.NBD()
    h.msgs = []
    h.set_debug_callback(lambda ctx, m: h.msgs.append(m))
    h.set_debug(True)
    if meta: h.add_meta_context("base:allocation")
    h.set_export_name(name)
    h.connect_tcp("127.0.0.1", PORT)
    return h
out = {}
${body}
print(json.dumps(out))
`);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  it('NBD_OPT_LIST names visible exports and hides TLS-only and out-of-range ones', async () => {
    const o = await py(`
h = opt()
names = {}
h.opt_list(lambda n, d: names.__setitem__(n, d))
out["names"] = names
h.opt_abort()
`);
    expect(o.names).toEqual({ mem: 'memory', raw: '', local: '', single: '' });
  });

  it('NBD_OPT_INFO gives size, flags, name, description and block sizes without entering transmission', async () => {
    const o = await py(`
h = opt()
h.set_full_info(True)
h.set_export_name("mem")
h.opt_info()
out["size"] = h.get_size()
out["ro"] = h.is_read_only()
out["desc"] = h.get_export_description()
out["canon"] = h.get_canonical_export_name()
out["bs"] = [h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM)]
out["sr"] = h.get_structured_replies_negotiated()
h.set_export_name("raw")
h.opt_info()
out["rawsize"] = h.get_size()
out["rawfast"] = h.can_fast_zero()
h.opt_abort()
`);
    expect(o).toMatchObject({ size: 16 * MiB, ro: false, desc: 'memory', canon: 'mem', bs: [1, 4096, 32 * MiB], sr: true, rawsize: 8 * MiB, rawfast: true });
    expect(released).toBeGreaterThanOrEqual(1); // INFO opened and released the export
  });

  it('unknown, TLS-only, refused and full exports get NBD_REP_ERR_* and the session continues', async () => {
    const o = await py(`
h = opt()
for name in ["nope", "secret", "faraway"]:
    h.set_export_name(name)
    try:
        h.opt_go()
        out[name] = "connected"
    except nbd.Error as e:
        out[name] = [e.errno, server_error(h)]
h.set_export_name("mem")
h.opt_go()
out["after"] = h.pread(4, 0).decode()
a = go("single", meta=False)
b = nbd.NBD()
b.msgs = []
b.set_debug_callback(lambda ctx, m: b.msgs.append(m))
b.set_debug(True)
b.set_export_name("single")
try:
    b.connect_tcp("127.0.0.1", PORT)
    out["second"] = "connected"
except nbd.Error as e:
    out["second"] = [e.errno, server_error(b)]
a.shutdown()
c = go("single", meta=False)
out["third"] = c.get_size()
`);
    // libnbd turns NBD_REP_ERR_UNKNOWN into ENOENT and the other refusals into ENOTSUP; the messages say which.
    expect(o.nope).toEqual(['ENOENT', "no export named 'nope'"]);
    expect(o.secret).toEqual(['ENOTSUP', "export 'secret' requires TLS"]);
    expect(o.faraway).toEqual(['ENOTSUP', "client 127.0.0.1 may not use export 'faraway'"]);
    expect(o.after).toBe('aaaa');
    expect((o.second as unknown[])[1]).toBe("export 'single' has reached its connection limit");
    expect(o.third).toBe(16 * MiB);
  });

  it('lists and selects base:allocation only when asked for', async () => {
    const o = await py(`
h = opt()
h.set_export_name("mem")
ctx = []
h.opt_list_meta_context(lambda n: ctx.append(n))
out["list"] = ctx
h.add_meta_context("x-unknown:thing")
ctx2 = []
h.opt_list_meta_context(lambda n: ctx2.append(n))
out["list_unknown_ns"] = ctx2
h.opt_go()
out["meta_unknown"] = h.can_meta_context("base:allocation")
h2 = opt()
h2.set_export_name("mem")
h2.add_meta_context("base:allocation")
h2.opt_go()
out["meta"] = h2.can_meta_context("base:allocation")
`);
    expect(o.list).toEqual(['base:allocation']);
    expect(o.list_unknown_ns).toEqual([]);
    expect(o.meta_unknown).toBe(false);
    expect(o.meta).toBe(true);
  });

  it('BLOCK_STATUS reports data, holes, and honours REQ_ONE', async () => {
    const o = await py(`
h = go("mem")
ext = []
h.block_status(16 * 1024 * 1024, 0, lambda ctx, off, e, err: ext.extend(e) or 0)
out["all"] = ext
one = []
h.block_status(16 * 1024 * 1024, 0, lambda ctx, off, e, err: one.extend(e) or 0, nbd.CMD_FLAG_REQ_ONE)
out["one"] = one
mid = []
h.block_status(1024 * 1024, 4 * 1024 * 1024 - 65536, lambda ctx, off, e, err: mid.extend(e) or 0, nbd.CMD_FLAG_REQ_ONE)
out["mid"] = mid
`);
    expect(o.all).toEqual([MiB, 0, 3 * MiB, 3, 128 * 1024, 0, 16 * MiB - 4 * MiB - 128 * 1024, 3]);
    expect(o.one).toEqual([MiB, 0]);
    expect(o.mid).toEqual([65536, 3]);
  });

  it('structured reads: holes are sent as OFFSET_HOLE, DF forces one data chunk', async () => {
    const o = await py(`
h = go("mem")
def collect(chunks):
    return lambda sub, off, status, err: chunks.append([off, len(sub), status]) or 0
sparse = []
buf = h.pread_structured(2 * 1024 * 1024, 0, collect(sparse))
out["sparse"] = sparse
out["sparse_ok"] = buf == b"a" * (1024 * 1024) + bytes(1024 * 1024)
df = []
buf = h.pread_structured(2 * 1024 * 1024, 0, collect(df), nbd.CMD_FLAG_DF)
out["df"] = df
out["df_ok"] = buf == b"a" * (1024 * 1024) + bytes(1024 * 1024)
`);
    expect(o.sparse).toEqual([
      [0, MiB, 1],
      [MiB, MiB, 2],
    ]);
    expect(o.sparse_ok).toBe(true);
    expect(o.df).toEqual([[0, 2 * MiB, 1]]);
    expect(o.df_ok).toBe(true);
  });

  it('FAST_ZERO succeeds when zeroing is cheap and fails fast with ENOTSUP otherwise', async () => {
    const o = await py(`
h = go("raw")
h.pwrite(b"z" * 8192, 0)
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    out["small"] = "ok"
except nbd.Error as e:
    out["small"] = e.errno
out["kept"] = h.pread(4, 0).decode()
h.zero(2 * 1024 * 1024, 0, nbd.CMD_FLAG_FAST_ZERO)
out["zeroed"] = h.pread(8192, 0) == bytes(8192)
h.zero(4096, 3 * 1024 * 1024, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
h.cache(1024 * 1024, 0)
h.flush()
h.shutdown()
`);
    expect(o).toEqual({ small: 'ENOTSUP', kept: 'zzzz', zeroed: true });
  });

  it('bad command flags and out-of-range requests get errors, not disconnects', async () => {
    const o = await py(`
h = go("mem")
h.set_strict_mode(0)
res = {}
for name, fn in [
    ("read_past_end", lambda: h.pread(4096, 16 * 1024 * 1024 - 1024)),
    ("write_past_end", lambda: h.pwrite(b"x" * 4096, 16 * 1024 * 1024 - 1024)),
    ("flag_on_flush", lambda: h.flush(nbd.CMD_FLAG_REQ_ONE)),
    ("too_big_read", lambda: h.pread(33 * 1024 * 1024, 0)),
]:
    try:
        fn()
        res[name] = "ok"
    except nbd.Error as e:
        res[name] = e.errno
out["res"] = res
out["still"] = h.pread(4, 0).decode()
`);
    expect(o.res).toEqual({ read_past_end: 'EINVAL', write_past_end: 'ENOSPC', flag_on_flush: 'EINVAL', too_big_read: 'EINVAL' });
    expect(o.still).toBe('aaaa');
  });
});
