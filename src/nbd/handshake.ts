/**
 * Fixed newstyle handshake and option haggling (proto.md "Handshake",
 * "Option types", "TLS support"). Produces what the transmission phase
 * needs, or null when the client ended the session during haggling.
 *
 * Invariants:
 * - Only fixed newstyle: a client without NBD_FLAG_C_FIXED_NEWSTYLE, or
 *   with unknown flags, is disconnected (proto.md requires dropping
 *   unknown flags; plain newstyle cannot receive error replies).
 * - Every option except EXPORT_NAME gets a reply; unknown options get
 *   NBD_REP_ERR_UNSUP and parsing continues.
 * - Option payloads are buffered only up to OPTION_MAX; bigger ones are
 *   discarded as they arrive (bounded memory) and answered with an error.
 * - STARTTLS (SELECTIVETLS mode) forgets all earlier negotiation state,
 *   as the spec requires, and refuses bytes pipelined behind it.
 */
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { NbdTlsOptions } from './types.js';
import type { Duplex } from 'node:stream';
import * as C from './constants.js';
import { ByteReader } from './byte-reader.js';
import type { OnreadFeed } from './onread-feed.js';
import type { ExportTable, OpenedExport } from './exports.js';
import type { NbdClientContext } from './types.js';
import type { BlockDeviceInfo } from '../device/block-device.js';

/** Largest option payload we buffer: export name + queries fit easily. */
const OPTION_MAX = 64 * 1024;
/** Larger options are read and discarded up to this size; beyond it the client is dropped. */
const OPTION_DISCARD_MAX = 16 * 1024 * 1024;
const MAX_QUERIES = 128;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export interface HandshakeDeps {
  table: ExportTable;
  tls?: NbdTlsOptions;
  maxRequest: number;
  remoteAddress: string;
  shuttingDown(): boolean;
  /** Called for each option received (the server's handshake timeout counts idle time). */
  onOption?(): void;
}

export interface Negotiated {
  stream: Duplex;
  tls: boolean;
  opened: OpenedExport;
  structured: boolean;
  /** base:allocation was selected for this export. */
  metaContext: boolean;
  transmissionFlags: number;
  /** Bytes that arrived after the final option (requests pipelined early). */
  leftover: Buffer;
  /** The onread feed of a plain-TCP socket (null after STARTTLS or when unavailable). */
  feed: OnreadFeed | null;
}

export function transmissionFlags(info: BlockDeviceInfo, structured: boolean): number {
  let f = C.FLAG_HAS_FLAGS | C.FLAG_SEND_FLUSH;
  if (info.readOnly) f |= C.FLAG_READ_ONLY;
  else {
    f |= C.FLAG_SEND_FUA;
    if (info.canTrim) f |= C.FLAG_SEND_TRIM;
    if (info.canZero) {
      f |= C.FLAG_SEND_WRITE_ZEROES;
      if (info.canFastZero) f |= C.FLAG_SEND_FAST_ZERO;
    }
  }
  if (structured) f |= C.FLAG_SEND_DF;
  if (info.multiConn) f |= C.FLAG_CAN_MULTI_CONN;
  if (info.canCache) f |= C.FLAG_SEND_CACHE;
  return f;
}

function pow2ceil(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** NBD_INFO_BLOCK_SIZE values that satisfy proto.md "Block size constraints" for this device. */
export function blockSizes(info: BlockDeviceInfo, maxRequest: number): { min: number; preferred: number; max: number } {
  const min = Math.min(65536, pow2ceil(Math.max(1, info.minBlockSize)));
  const preferred = pow2ceil(Math.max(info.blockSize, min, 512));
  const limit = Math.min(maxRequest, info.maxRequest, 0xffffffff);
  const max = Math.max(min, Math.floor(limit / min) * min);
  return { min, preferred, max };
}

function utf8(b: Buffer): string | null {
  if (b.length > C.MAX_STRING || b.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return null;
  }
}

export class Handshake {
  private reader: ByteReader;
  private stream: Duplex;
  private tls = false;
  private structured = false;
  private metaExport: string | null = null;
  private noZeroes = false;

  constructor(
    socket: Duplex,
    private readonly deps: HandshakeDeps,
    private feed: OnreadFeed | null = null,
  ) {
    this.stream = socket;
    if (feed) {
      const reader = new ByteReader(socket, true);
      // The staging buffer is reused by the next read: the reader gets a copy.
      feed.next = () => feed.staging;
      feed.sink = (n) => reader.push(Buffer.from(feed.staging.subarray(0, n)));
      this.reader = reader;
    } else {
      this.reader = new ByteReader(socket);
    }
  }

  private detachReader(): Buffer {
    if (this.feed) this.feed.sink = () => {};
    return this.reader.detach();
  }

  private ctx(): NbdClientContext {
    return { remoteAddress: this.deps.remoteAddress, tls: this.tls };
  }

  private send(b: Buffer): void {
    this.stream.write(b);
  }

  private reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.allocUnsafe(20);
    h.writeBigUInt64BE(C.OPTION_REPLY_MAGIC, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.send(data.length ? Buffer.concat([h, data]) : h);
  }

  private error(option: number, type: number, message: string): void {
    this.reply(option, type, Buffer.from(message.slice(0, 1024), 'utf8'));
  }

  async run(): Promise<Negotiated | null> {
    const g = Buffer.allocUnsafe(18);
    g.writeBigUInt64BE(C.NBDMAGIC, 0);
    g.writeBigUInt64BE(C.IHAVEOPT, 8);
    g.writeUInt16BE(C.FLAG_FIXED_NEWSTYLE | C.FLAG_NO_ZEROES, 16);
    this.send(g);

    const cflags = (await this.reader.read(4)).readUInt32BE(0);
    if (cflags & ~(C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES)) throw new ProtocolError(`unknown client flags 0x${cflags.toString(16)}`);
    if (!(cflags & C.FLAG_C_FIXED_NEWSTYLE)) throw new ProtocolError('client does not speak fixed newstyle');
    this.noZeroes = !!(cflags & C.FLAG_C_NO_ZEROES);

    for (;;) {
      const h = await this.reader.read(16);
      this.deps.onOption?.();
      if (h.readBigUInt64BE(0) !== C.IHAVEOPT) throw new ProtocolError('bad option magic');
      const option = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > OPTION_MAX) {
        if (option === C.OPT_EXPORT_NAME || len > OPTION_DISCARD_MAX) throw new ProtocolError(`option ${option} of ${len} bytes`);
        await this.reader.skip(len);
        const known = option >= C.OPT_EXPORT_NAME && option <= C.OPT_SET_META_CONTEXT && option !== 4;
        this.error(option, known ? C.REP_ERR_TOO_BIG : C.REP_ERR_UNSUP, `option data of ${len} bytes is too large`);
        continue;
      }
      const data = len ? await this.reader.read(len) : Buffer.alloc(0);
      if (this.deps.shuttingDown() && option !== C.OPT_ABORT) {
        if (option === C.OPT_EXPORT_NAME) throw new ProtocolError('server is shutting down');
        this.error(option, C.REP_ERR_SHUTDOWN, 'server is shutting down');
        continue;
      }
      const done = await this.option(option, data);
      if (done === 'abort') return null;
      if (done) return done;
    }
  }

  /** Handle one option; returns the negotiated result when transmission starts. */
  private async option(option: number, data: Buffer): Promise<Negotiated | 'abort' | undefined> {
    switch (option) {
      case C.OPT_ABORT:
        this.reply(option, C.REP_ACK);
        return 'abort';
      case C.OPT_LIST:
        if (data.length) return void this.error(option, C.REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const e of this.deps.table.list(this.ctx())) {
          const name = Buffer.from(e.name, 'utf8');
          const desc = Buffer.from(e.description ?? '', 'utf8');
          const b = Buffer.allocUnsafe(4 + name.length + desc.length);
          b.writeUInt32BE(name.length, 0);
          name.copy(b, 4);
          desc.copy(b, 4 + name.length);
          this.reply(option, C.REP_SERVER, b);
        }
        this.reply(option, C.REP_ACK);
        return;
      case C.OPT_STARTTLS:
        return this.startTls(option, data);
      case C.OPT_STRUCTURED_REPLY:
        if (data.length) return void this.error(option, C.REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.reply(option, C.REP_ACK);
        return;
      case C.OPT_LIST_META_CONTEXT:
      case C.OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      case C.OPT_INFO:
      case C.OPT_GO:
        return this.infoGo(option, data);
      case C.OPT_EXPORT_NAME:
        return this.exportName(data);
      default:
        this.error(option, C.REP_ERR_UNSUP, `option ${option} is not supported`);
        return;
    }
  }

  private async startTls(option: number, data: Buffer): Promise<undefined> {
    if (data.length) return void this.error(option, C.REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
    if (this.tls) return void this.error(option, C.REP_ERR_INVALID, 'TLS is already active');
    const tls = this.deps.tls;
    if (!tls) return void this.error(option, C.REP_ERR_POLICY, 'TLS is not configured on this server');
    this.reply(option, C.REP_ACK);
    const raw = this.stream;
    const early = this.detachReader();
    this.feed = null; // TLS reads through the TLSSocket from now on
    // The client must wait for our ACK before starting TLS; plaintext bytes
    // here would be injected into the session (a known STARTTLS attack).
    if (early.length) throw new ProtocolError('data pipelined after NBD_OPT_STARTTLS');
    // The socket is handed to a (never-listening) tls.Server through its
    // documented 'connection' event: only sockets owned by a tls.Server get
    // Node's client-certificate verification (TLSSocket.authorized).
    const requestCert = !!tls.requestCert;
    const server = createTlsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, minVersion: 'TLSv1.2', requestCert, rejectUnauthorized: requestCert });
    const sock = await new Promise<TLSSocket>((resolve, reject) => {
      server.once('secureConnection', (s: TLSSocket) => resolve(s));
      server.once('tlsClientError', (e: Error) => reject(new ProtocolError(`TLS handshake failed: ${e.message}`)));
      raw.once('close', () => reject(new ProtocolError('connection closed during the TLS handshake')));
      server.emit('connection', raw);
    });
    if (requestCert && !sock.authorized) {
      sock.destroy();
      throw new ProtocolError(`client certificate rejected: ${sock.authorizationError}`);
    }
    this.stream = sock;
    this.tls = true;
    // proto.md: after STARTTLS the server MUST NOT keep earlier negotiation state.
    this.structured = false;
    this.metaExport = null;
    this.reader = new ByteReader(sock);
    return;
  }

  private async metaContext(option: number, data: Buffer): Promise<undefined> {
    const set = option === C.OPT_SET_META_CONTEXT;
    if (set) this.metaExport = null; // replaced even when this request fails
    if (!this.structured) return void this.error(option, C.REP_ERR_INVALID, 'negotiate structured replies first');
    const bad = (why: string) => void this.error(option, C.REP_ERR_INVALID, why);
    if (data.length < 8) return bad('truncated request');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 8) return bad('export name overruns the option');
    const name = utf8(data.subarray(4, 4 + nameLen));
    if (name === null) return bad('export name is not a valid string');
    let pos = 4 + nameLen;
    const n = data.readUInt32BE(pos);
    pos += 4;
    if (n > MAX_QUERIES) return void this.error(option, C.REP_ERR_TOO_BIG, `too many queries (${n})`);
    const queries: string[] = [];
    for (let i = 0; i < n; i++) {
      if (pos + 4 > data.length) return bad('query overruns the option');
      const ql = data.readUInt32BE(pos);
      pos += 4;
      if (ql > data.length - pos) return bad('query overruns the option');
      const q = utf8(data.subarray(pos, pos + ql));
      pos += ql;
      if (q === null || !q.includes(':')) return bad('query must be a string starting with a namespace and a colon');
      queries.push(q);
    }
    if (pos !== data.length) return bad('trailing bytes after the queries');

    const r = await this.deps.table.open(name, this.ctx());
    if (!r.ok) return void this.error(option, r.reason === 'unknown' ? C.REP_ERR_UNKNOWN : r.reason === 'tls' ? C.REP_ERR_TLS_REQD : C.REP_ERR_POLICY, r.message);
    await r.opened.release();

    // Only base:allocation exists. LIST treats "base:" as a wildcard and no
    // queries as "everything"; SET selects exact names only (proto.md).
    const match = set
      ? queries.includes(C.BASE_ALLOCATION)
      : n === 0 || queries.some((q) => q === 'base:' || q === C.BASE_ALLOCATION);
    if (match) {
      const nm = Buffer.from(C.BASE_ALLOCATION);
      const b = Buffer.allocUnsafe(4 + nm.length);
      b.writeUInt32BE(set ? C.BASE_ALLOCATION_ID : 0, 0);
      nm.copy(b, 4);
      this.reply(option, C.REP_META_CONTEXT, b);
      if (set) this.metaExport = name;
    }
    this.reply(option, C.REP_ACK);
    return;
  }

  private async infoGo(option: number, data: Buffer): Promise<Negotiated | undefined> {
    const bad = (why: string) => void this.error(option, C.REP_ERR_INVALID, why);
    if (data.length < 6) return bad('truncated request');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6) return bad('export name overruns the option');
    const name = utf8(data.subarray(4, 4 + nameLen));
    if (name === null) return bad('export name is not a valid string');
    const nInfo = data.readUInt16BE(4 + nameLen);
    if (data.length !== 6 + nameLen + 2 * nInfo) return bad('information request count does not match the length');
    const wanted = new Set<number>();
    for (let i = 0; i < nInfo; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));

    const r = await this.deps.table.open(name, this.ctx());
    if (!r.ok) {
      const type = r.reason === 'unknown' ? C.REP_ERR_UNKNOWN : r.reason === 'tls' ? C.REP_ERR_TLS_REQD : C.REP_ERR_POLICY;
      return void this.error(option, type, r.message);
    }
    const opened = r.opened;
    const go = option === C.OPT_GO;
    if (go && !this.deps.table.acquire(name, opened.export)) {
      await opened.release();
      return void this.error(option, C.REP_ERR_POLICY, `export '${name}' has reached its connection limit`);
    }
    const flags = transmissionFlags(opened.info, this.structured);

    const exp = Buffer.allocUnsafe(12);
    exp.writeUInt16BE(C.INFO_EXPORT, 0);
    exp.writeBigUInt64BE(BigInt(opened.info.size), 2);
    exp.writeUInt16BE(flags, 10);
    this.reply(option, C.REP_INFO, exp);
    if (wanted.has(C.INFO_NAME)) this.reply(option, C.REP_INFO, Buffer.concat([u16(C.INFO_NAME), Buffer.from(name)]));
    const desc = opened.export.description;
    if (wanted.has(C.INFO_DESCRIPTION) && desc) {
      this.reply(option, C.REP_INFO, Buffer.concat([u16(C.INFO_DESCRIPTION), Buffer.from(desc.slice(0, C.MAX_STRING))]));
    }
    // Always sent: our limits are not the defaults whenever minBlockSize > 1 or maxRequest < 4 GiB.
    const bs = blockSizes(opened.info, this.deps.maxRequest);
    const b = Buffer.allocUnsafe(14);
    b.writeUInt16BE(C.INFO_BLOCK_SIZE, 0);
    b.writeUInt32BE(bs.min, 2);
    b.writeUInt32BE(bs.preferred, 6);
    b.writeUInt32BE(bs.max, 10);
    this.reply(option, C.REP_INFO, b);
    this.reply(option, C.REP_ACK);
    if (!go) {
      await opened.release();
      return;
    }
    return this.finish(opened, flags);
  }

  private async exportName(data: Buffer): Promise<Negotiated> {
    const name = utf8(data);
    if (name === null) throw new ProtocolError('export name is not a valid string');
    const r = await this.deps.table.open(name, this.ctx());
    // NBD_OPT_EXPORT_NAME cannot carry an error: the spec mandates a hard disconnect.
    if (!r.ok) throw new ProtocolError(`NBD_OPT_EXPORT_NAME refused: ${r.message}`);
    if (!this.deps.table.acquire(name, r.opened.export)) {
      await r.opened.release();
      throw new ProtocolError(`export '${name}' has reached its connection limit`);
    }
    const flags = transmissionFlags(r.opened.info, this.structured);
    const b = Buffer.alloc(this.noZeroes ? 10 : 134);
    b.writeBigUInt64BE(BigInt(r.opened.info.size), 0);
    b.writeUInt16BE(flags, 8);
    this.send(b);
    return this.finish(r.opened, flags);
  }

  private finish(opened: OpenedExport, flags: number): Negotiated {
    return {
      stream: this.stream,
      tls: this.tls,
      opened,
      structured: this.structured,
      metaContext: this.structured && this.metaExport === opened.name,
      transmissionFlags: flags,
      leftover: this.detachReader(),
      feed: this.feed,
    };
  }

  /** Stop reading (used when the handshake fails, before the socket is destroyed). */
  abandon(): Duplex {
    this.detachReader();
    return this.stream;
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n, 0);
  return b;
}
