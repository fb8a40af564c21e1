/**
 * The daemon's control socket: newline-delimited JSON requests
 * {id, method, args} answered by {id, result} or {id, error: {code, message}}.
 * Only API_METHODS are callable. The socket lives in the home directory and
 * is reachable only by users who can reach that directory.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import { err, isStorageError, StorageError, type ErrorCode } from '../errors.js';
import { API_METHODS, type Api, type LocalApi } from './api.js';

const MAX_LINE = 1024 * 1024;

export function serveControl(path: string, api: LocalApi, log: (m: string) => void = () => {}): Server {
  if (existsSync(path)) unlinkSync(path);
  const server = createServer((sock: Socket) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void handle(line);
      }
    });
    sock.on('error', () => {});
    const handle = async (line: string) => {
      let id: unknown = null;
      try {
        const req = JSON.parse(line) as { id: unknown; method: string; args: unknown[] };
        id = req.id;
        if (!(API_METHODS as readonly string[]).includes(req.method)) throw err.inval(`unknown method '${req.method}'`);
        const fn = (api as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[req.method]!;
        const result = await fn(...(Array.isArray(req.args) ? req.args : []));
        sock.write(JSON.stringify({ id, result: result ?? null }) + '\n');
      } catch (e) {
        const se = isStorageError(e) ? e : err.io((e as Error).message ?? String(e));
        if (!isStorageError(e)) log(`control: ${(e as Error).stack ?? String(e)}`);
        sock.write(JSON.stringify({ id, error: { code: se.code, message: se.message } }) + '\n');
      }
    };
  });
  server.listen(path);
  return server;
}

/** A client that looks like the Api but forwards every call to the daemon. */
export async function connectControl(path: string): Promise<Api | null> {
  if (!existsSync(path)) return null;
  const sock = await new Promise<Socket | null>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
  if (!sock) return null;
  sock.setEncoding('utf8');
  let next = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  let buf = '';
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)) as { id: number; result?: unknown; error?: { code: ErrorCode; message: string } };
      buf = buf.slice(nl + 1);
      const p = pending.get(msg.id);
      if (!p) continue;
      pending.delete(msg.id);
      if (msg.error) p.reject(new StorageError(msg.error.code, msg.error.message));
      else p.resolve(msg.result);
    }
  });
  sock.on('close', () => {
    for (const p of pending.values()) p.reject(err.shutdown('the daemon closed the control connection'));
    pending.clear();
  });
  const call = (method: string, args: unknown[]) =>
    new Promise<unknown>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      // Functions (progress callbacks) do not cross the socket.
      sock.write(JSON.stringify({ id, method, args: JSON.parse(JSON.stringify(args)) }) + '\n');
    });
  const api: Record<string, unknown> = {};
  for (const m of API_METHODS) api[m] = (...args: unknown[]) => call(m, args);
  api['close'] = async () => void sock.end();
  return api as unknown as Api;
}
