/**
 * Calls into a worker thread (node:worker_threads) that runs sluice-worker (src/bin/
 * sluice-worker.ts): CPU-heavy pure work, so that the agent's event loop keeps answering
 * /healthz, watches and timers while a large policy is validated or rendered.
 *
 * - The thread starts on the first call and keeps the process alive only while a call is
 *   in flight.
 * - Calls run one after another in the thread, in the order made.
 * - A call that throws in the thread rejects with its message. A thread that dies (or a
 *   call over its timeout, which terminates the thread) rejects every call in flight;
 *   the next call starts a fresh thread.
 *
 * It does not know what the tasks do: sluice-worker's table names them.
 */
import { join } from "node:path";
import { Worker } from "node:worker_threads";

/**
 * sluice-worker beside the caller's code: build/src/bin/ for the compiled tree (this file
 * in build/src/util/), dist/bin/ for the bundles (this code inside dist/bin/<bundle>.js).
 */
export const WORKER_SCRIPT = join(__dirname, "..", "bin", "sluice-worker.js");

/**
 * The thread's young generation, in MiB. Left to V8, a worker's heap grows with what the
 * host has (a render of 5,000 pods and 1,000 policies left the agent 100 MiB larger on a
 * 24 GiB machine); bounded, it stays near what the same render costs on the main thread,
 * at no measurable cost in time. The old generation is left alone: a large cluster's
 * render must not run out of heap.
 */
export const WORKER_YOUNG_GENERATION_MB = 16;

/** What the thread is sent and answers. */
export interface WorkerRequest {
  id: number;
  task: string;
  input: unknown;
}
export type WorkerReply = { id: number; ok: true; output: unknown } | { id: number; ok: false; error: string };

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export class WorkerThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  /** `name` is the thread's name (in errors and `top -H`). */
  constructor(
    private readonly name: string,
    private readonly script = WORKER_SCRIPT,
  ) {}

  /** Runs `task` on `input` in the thread; `timeoutMs` bounds it (the thread is replaced). */
  call<T>(task: string, input: unknown, o: { timeoutMs?: number } = {}): Promise<T> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer =
        o.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.fail(worker, new Error(`${this.name}: ${task} took longer than ${o.timeoutMs} ms`));
              void worker.terminate();
            }, o.timeoutMs);
      timer?.unref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      worker.ref();
      worker.postMessage({ id, task, input } satisfies WorkerRequest);
    });
  }

  /** The thread's V8 heap (used and total bytes), or undefined while it is not running. */
  async heap(): Promise<{ used: number; total: number } | undefined> {
    const w = this.worker;
    if (!w) return undefined;
    const h = await w.getHeapStatistics();
    return { used: h.used_heap_size, total: h.total_heap_size };
  }

  /** Stops the thread; calls in flight reject. */
  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.fail(w, new Error(`${this.name}: closed`));
    await w.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(this.script, { name: this.name, resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    w.unref();
    w.on("message", (m: WorkerReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (this.pending.size === 0) w.unref();
      if (m.ok) p.resolve(m.output);
      else p.reject(new Error(m.error));
    });
    w.on("error", (err: Error) => this.fail(w, new Error(`${this.name} failed: ${err.message}`)));
    w.on("exit", (code) => this.fail(w, new Error(`${this.name} exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  /** Forgets `w` (the next call starts a new thread) and rejects what was in flight on it. */
  private fail(w: Worker, err: Error): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }
}
