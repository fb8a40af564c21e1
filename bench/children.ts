/**
 * The processes a benchmark run starts (servers, fio, qemu tools) and what happens to them
 * when the run is interrupted; bench/nbd, bench/qcow2 and bench/snapshot-strategies use it.
 *
 * Why: a benchmark killed by Ctrl-C, SIGTERM, SIGHUP or a closed stdout (`| head`) used to
 * die alone, outside its `finally`: its servers kept running and its files (GiBs of them,
 * in /dev/shm) stayed. interruptible() makes those ends stop every tracked child, run the
 * bench's cleanup, and exit with the signal's status (128 + signal; 141 for EPIPE).
 * A runner killed outright (SIGKILL) runs no code: children that are node processes are
 * given an IPC channel and stop when it closes (the bench's own servers listen for
 * 'disconnect'; `strata serve` gets EXIT_WITH_PARENT).
 */
import type { ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';

/** Every process this run started, until it exits. */
const children = new Set<ChildProcess>();

/** Set once an interruption began: new children are stopped at once, checkpoint() parks. */
let stopping = false;

/** Remember `child` until it exits, so that an interrupted run can stop it. */
export function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once('exit', () => children.delete(child));
  // Started by a run that is being stopped (its body carries on until process.exit): stop it
  // now, or it would outlive the run.
  if (stopping) child.kill('SIGTERM');
  return child;
}

/**
 * SIGTERM a process and wait until it has exited (at once if it already has); SIGKILL
 * after `grace` ms (an interrupted run must not wait on a wedged server forever).
 */
export function stopChild(child: ChildProcess, grace = 60_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => child.kill('SIGKILL'), grace);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill(signal);
  });
}

/** Stop every tracked process that is not fio (the servers), SIGKILL after `grace` ms. */
export async function stopChildren(grace = 10_000): Promise<void> {
  await Promise.all([...children].filter((c) => !isClient(c)).map((c) => stopChild(c, grace)));
}

const isClient = (c: ChildProcess) => c.spawnfile === 'fio';

/**
 * Node flags for a child whose code is not the bench's (`strata serve`): it SIGTERMs itself
 * when its IPC channel closes, i.e. when the runner is gone however it went, and shuts down
 * as it does on SIGTERM. Its stderr errors are ignored from then on: a stderr piped to the
 * runner is a broken pipe now, and its "shutting down" line crashed it mid-shutdown (EPIPE).
 * Spawn it with an 'ipc' stdio slot. The channel must not keep it alive.
 */
const watchParent = `process.once('disconnect', () => {
  process.stderr.on('error', () => {});
  process.kill(process.pid, 'SIGTERM');
});
process.channel?.unref();`;
export const EXIT_WITH_PARENT = ['--import', `data:text/javascript,${encodeURIComponent(watchParent)}`];

/**
 * Yield to the event loop (a signal that arrived during a synchronous command is handled
 * there) and, if the run is being stopped, never return: a bench body that goes on by
 * itself after a failure (one failed measurement is not the end of a run) parks here
 * instead of starting more work while its files are removed.
 */
export async function checkpoint(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (stopping) await new Promise<never>(() => {});
}

export interface Interruption {
  /** What the cleanup removes, for the message. */
  what: string;
  /**
   * Runs once fio has stopped and before the other children are stopped: the bench knows
   * the order its servers and files go in (volumes destroyed through a daemon before it
   * stops; files removed after the servers using them, see stopChildren()).
   */
  cleanup(): Promise<void>;
  /** Streams whose EPIPE means the reader is gone (default stdout; add stderr where the log goes there). */
  streams?: NodeJS.WritableStream[];
}

/**
 * Run `body` so that SIGINT, SIGTERM, SIGHUP or a closed output stream (EPIPE: `| head`)
 * stop every child, run the cleanup, and exit with the signal's status, instead of
 * killing this process alone. The handlers are removed when `body` settles (unless they
 * are already at work: then `body`'s result never arrives, process.exit does).
 */
export async function interruptible<T>(o: Interruption, body: () => Promise<T>): Promise<T> {
  const streams = o.streams ?? [process.stdout];
  const stop = (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    // stderr: stdout may be the pipe that just closed.
    process.stderr.write(`\nbench interrupted (${why}): stopping ${children.size} processes, removing ${o.what}\n`);
    // Clients first, as Ctrl-C stops fio (SIGINT: its job processes wind down too; SIGKILL
    // left them running): a server stopped under a running fio made it print a screen of
    // errors for its requests in flight.
    void Promise.all([...children].filter(isClient).map((c) => stopChild(c, 10_000, 'SIGINT')))
      .then(() => o.cleanup())
      .catch((e: Error) => process.stderr.write(`bench cleanup: ${e.message}\n`))
      .then(() => Promise.all([...children].map((c) => stopChild(c, 10_000))))
      .finally(() => process.exit(code));
  };
  const onSignal = (sig: NodeJS.Signals) => stop(sig, 128 + (osConstants.signals[sig] ?? 0));
  const onStreamError = (e: NodeJS.ErrnoException) => stop(e.code ?? e.message, 141);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, onSignal);
  for (const s of streams) s.on('error', onStreamError);
  try {
    const r = await body();
    if (stopping) return new Promise<never>(() => {});
    return r;
  } catch (e) {
    // A child killed by the same Ctrl-C can fail the body before this process's own SIGINT
    // is handled: let it be handled first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // The children stopped under it: the run's own failure (fio killed) is no news.
    if (stopping) return new Promise<never>(() => {});
    throw e;
  } finally {
    if (!stopping) {
      for (const sig of signals) process.off(sig, onSignal);
      for (const s of streams) s.off('error', onStreamError);
    }
  }
}
