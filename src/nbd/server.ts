/**
 * NbdServer: accepts TCP connections, runs the handshake, then hands the
 * socket to a Transmission. Owns connection bookkeeping, the per-server
 * buffer pool and graceful shutdown. It never closes export devices: the
 * caller (daemon, test) owns them.
 *
 * Shutdown order (close()): stop accepting -> drop connections still
 * haggling (they have nothing in flight) -> every transmission finishes
 * its running requests, answers new ones with ESHUTDOWN, flushes its
 * device, closes -> close() resolves. close({ force: true }) destroys
 * sockets at once (a second SIGTERM).
 */
import net from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { DeviceStatsSnapshot } from '../device/stats.js';
import { BufferPool } from './buffer-pool.js';
import { ExportTable } from './exports.js';
import { Handshake } from './handshake.js';
import { OnreadFeed } from './onread-feed.js';
import { Transmission } from './transmission.js';
import type { NbdLogger, NbdServerOptions, NbdTlsOptions } from './types.js';

const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;
const DEFAULT_MAX_INFLIGHT = 64 * 1024 * 1024;

const silent: NbdLogger = { debug() {}, info() {}, warn() {}, error() {} };

interface Conn {
  socket: net.Socket;
  stream: Duplex;
  handshake: Handshake | null;
  transmission: Transmission | null;
  done: Promise<void>;
}

export class NbdServer {
  private readonly table: ExportTable;
  private readonly log: NbdLogger;
  private readonly maxRequest: number;
  private readonly maxInflight: number;
  private readonly handshakeTimeoutMs: number;
  private readonly pool = new BufferPool();
  /** Shrinks an idle pool (BufferPool.trimIfIdle); does not keep the process alive. */
  private readonly trim = setInterval(() => this.pool.trimIfIdle(), 5000).unref();
  private readonly tls?: NbdTlsOptions;
  private readonly conns = new Set<Conn>();
  private server: net.Server | null = null;
  private closing = false;

  constructor(opts: NbdServerOptions) {
    this.table = new ExportTable(opts.exports);
    this.log = opts.logger ?? silent;
    this.maxRequest = opts.maxRequest ?? DEFAULT_MAX_REQUEST;
    if (!Number.isInteger(this.maxRequest) || this.maxRequest < 512 || this.maxRequest > 0xffffffff) {
      throw new RangeError(`maxRequest must be an integer between 512 and 2^32-1, got ${opts.maxRequest}`);
    }
    this.maxInflight = Math.max(opts.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT, this.maxRequest);
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
    if (opts.tls) {
      // Parse once now so a bad key or certificate fails at construction, not at the first STARTTLS.
      createSecureContext({ key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca });
      if (opts.tls.requestCert && !opts.tls.ca) throw new Error('tls.requestCert needs tls.ca to verify client certificates');
      this.tls = { ...opts.tls };
    }
  }

  /** Listen on a TCP port (default 127.0.0.1:10809) or, if `port` is a string, a Unix socket path. */
  listen(port: number | string = 10809, host = '127.0.0.1'): Promise<net.AddressInfo | string> {
    if (this.server) return Promise.reject(new Error('NbdServer is already listening'));
    // pauseOnConnect: nothing is read before handleConnection decides how to read (onread-feed.ts).
    const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (s) => this.handleConnection(s));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const ok = () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.error({ err: e.message }, 'nbd listener error'));
        const a = server.address();
        resolve(a as net.AddressInfo | string);
      };
      if (typeof port === 'string') server.listen(port, ok);
      else server.listen(port, host, ok);
    });
  }

  /** Serve one already-accepted socket (the daemon may accept on its own listeners). */
  handleConnection(accepted: net.Socket): void {
    if (this.closing) {
      accepted.destroy();
      return;
    }
    accepted.setNoDelay(true);
    const remoteAddress = accepted.remoteAddress ?? '';
    const logContext = { remote: `${remoteAddress}:${accepted.remotePort}` };
    // Plain TCP reads through onread when the accepted socket is still paused and unread.
    const wrapped = accepted.isPaused() && accepted.readableLength === 0 ? OnreadFeed.wrapAccepted(accepted) : null;
    const socket = wrapped ? wrapped.socket : accepted;
    const hs = new Handshake(socket, {
      table: this.table,
      tls: this.tls,
      maxRequest: this.maxRequest,
      remoteAddress,
      shuttingDown: () => this.closing,
      // The handshake timeout is for idle clients: one listing hundreds of exports (nbdinfo --list
      // probes each) stays in the option phase far longer, but never silent for long.
      onOption: () => void timer.refresh(),
    }, wrapped?.feed ?? null);
    const conn: Conn = { socket, stream: socket, handshake: hs, transmission: null, done: Promise.resolve() };
    this.conns.add(conn);
    const timer: NodeJS.Timeout = setTimeout(() => {
      this.log.info(logContext, 'nbd handshake timed out');
      this.kill(conn);
    }, this.handshakeTimeoutMs);
    timer.unref();
    // Errors before transmission are handled by the handshake's reader; this keeps a late one from crashing the process.
    socket.on('error', () => {});

    conn.done = (async () => {
      try {
        const neg = await hs.run();
        clearTimeout(timer);
        conn.handshake = null;
        if (!neg) {
          // NBD_OPT_ABORT: the ACK is queued; end() sends it, then closes (the client must drop too).
          socket.end();
          setTimeout(() => socket.destroy(), 5000).unref();
          return;
        }
        conn.stream = neg.stream;
        const { opened } = neg;
        this.log.debug({ ...logContext, export: opened.name, tls: neg.tls }, 'nbd transmission started');
        const t = new Transmission(neg.stream, {
          device: opened.device,
          info: opened.info,
          structured: neg.structured,
          metaContext: neg.metaContext,
          transmissionFlags: neg.transmissionFlags,
          maxRequest: this.maxRequest,
          maxInflight: this.maxInflight,
          pool: this.pool,
          log: this.log,
          logContext: { ...logContext, export: opened.name },
        });
        conn.transmission = t;
        t.start(neg.leftover, neg.feed);
        if (this.closing) t.drain();
        try {
          await t.finished();
        } finally {
          this.table.releaseSlot(opened.name);
          await opened.release().catch((e: unknown) => this.log.warn({ ...logContext, err: String(e) }, 'nbd export release failed'));
          this.log.debug({ ...logContext, export: opened.name }, 'nbd connection closed');
        }
      } catch (e) {
        clearTimeout(timer);
        this.log.info({ ...logContext, err: (e as Error).message }, 'nbd handshake ended');
        if (conn.handshake) conn.stream = conn.handshake.abandon();
        this.kill(conn);
      } finally {
        this.conns.delete(conn);
      }
    })();
  }

  private kill(conn: Conn): void {
    conn.stream.destroy();
    conn.socket.destroy();
  }

  /**
   * Stop accepting and close every connection: gracefully (running
   * requests finish, devices are flushed) unless force is set.
   */
  async close(opts: { force?: boolean } = {}): Promise<void> {
    this.closing = true;
    clearInterval(this.trim);
    const listening = this.server;
    this.server = null;
    // Not waiting for net.Server's 'close': it counts the accepted socket
    // objects, and onread connections live on in a re-wrapped socket. Our
    // own connection set is what close() waits for.
    listening?.close();
    for (const c of this.conns) {
      if (opts.force || !c.transmission) this.kill(c);
      else c.transmission.drain();
    }
    await Promise.all([...this.conns].map((c) => c.done));
  }

  /** Number of open client connections (handshake or transmission). */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** Per-export counters: ops, errors, bytes, latency histograms. */
  stats(): Record<string, DeviceStatsSnapshot> {
    return this.table.stats();
  }
}
