/**
 * Public types of the NBD server library.
 */
import type { BlockDevice } from '../device/block-device.js';

/** One export: a BlockDevice plus the policy for serving it. */
export interface NbdExport {
  device: BlockDevice;
  /** Shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION. */
  description?: string;
  /** Serve read-only even if the device is writable (snapshots). */
  readOnly?: boolean;
  /** Refuse the export until the client has upgraded with STARTTLS. */
  requireTls?: boolean;
  /** CIDR ranges ("10.0.0.0/8", "::1/128", "127.0.0.1") allowed to use the export; absent = everyone. */
  allowedClients?: string[];
  /** Most simultaneous connections in transmission phase for this export name; absent = unlimited. */
  maxConnections?: number;
  /**
   * Called once when a connection that opened this export is done with it
   * (transmission ended, or the handshake only looked at it with
   * NBD_OPT_INFO). Lets a daemon refcount volumes that are in use.
   */
  release?(): void | Promise<void>;
}

/** What NBD_OPT_LIST shows about an export without opening it. */
export interface NbdExportInfo {
  name: string;
  description?: string;
  /** Hidden from clients that have not started TLS. */
  requireTls?: boolean;
  /** Hidden from clients outside these ranges. */
  allowedClients?: string[];
}

export interface NbdClientContext {
  remoteAddress: string;
  tls: boolean;
}

/** Live export table: the daemon adds and removes volumes without restarting the server. */
export interface NbdExportResolver {
  list(): NbdExportInfo[];
  open(name: string, ctx: NbdClientContext): Promise<NbdExport | null>;
}

export type NbdExports = Record<string, NbdExport> | NbdExportResolver;

export interface NbdTlsOptions {
  /** PEM. */
  key: string | Buffer;
  /** PEM (may include the chain). */
  cert: string | Buffer;
  /** PEM of the CA that signs client certificates; needed with requestCert. */
  ca?: string | Buffer;
  /** Ask for and verify a client certificate; clients without a valid one are refused. */
  requestCert?: boolean;
}

/** The subset of pino's interface the server uses. */
export interface NbdLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface NbdServerOptions {
  exports: NbdExports;
  tls?: NbdTlsOptions;
  /** Largest READ/WRITE accepted (and advertised as the maximum block size). Default 32 MiB. */
  maxRequest?: number;
  /**
   * Bytes of request payloads and pending replies one connection may hold
   * before the server stops reading its socket. Default 64 MiB (never less
   * than maxRequest).
   */
  maxInflightBytes?: number;
  /** A client that has not entered transmission within this time is dropped. Default 30 s. */
  handshakeTimeoutMs?: number;
  logger?: NbdLogger;
}
