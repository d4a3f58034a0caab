/**
 * One etcd prefix, listed and then watched: the loop every etcd consumer (the policy data,
 * the subnet leases) needs, written once.
 *
 * - The list is paged: ranges of `pageSize` keys, every page after the first read at the
 *   first page's revision and starting just past the last key seen, so a prefix of
 *   50 000 keys is never one giant response, and the pages together are one consistent
 *   listing (each key exactly once, as of one revision).
 * - The watch starts at that revision + 1, so nothing between the list and the watch is
 *   missed.
 * - A watch that fails, is cancelled by etcd (its revision was compacted) or loses its
 *   connection is dropped and replaced by a fresh list + watch, retried with exponential
 *   back-off. The consumer's state is never cleared meanwhile: it gets the next complete
 *   listing and replaces (or diffs) its state with it. While etcd is unreachable the
 *   consumer keeps what it last knew (fail closed: a dataplane is never emptied by an outage).
 * - The consumer's handlers run one at a time in etcd's order, each awaited (a handler may
 *   validate off-thread) before the next list or event is handed over. A handler that throws
 *   is logged; it never stops the watch, and never reaches etcd3 (which rethrows a listener's
 *   error out of the process).
 */
import { type Etcd3, type IKeyValue, Range, type Watcher } from "etcd3";
import type { Logger } from "pino";
import { withTimeout } from "./withTimeout.js";

export interface ListWatchHandlers {
  /** A complete listing of the prefix at `revision` (the first or a relist): replaces everything known of it. */
  list(kvs: IKeyValue[], revision: string): void | Promise<void>;
  put(kv: IKeyValue, previous: IKeyValue | undefined): void | Promise<void>;
  /** `previous` only with `withPreviousKV`. */
  delete(kv: IKeyValue, previous: IKeyValue | undefined): void | Promise<void>;
}

export interface EtcdListWatchOptions {
  client: Etcd3;
  /** The key prefix, usually ending in "/". */
  prefix: string;
  log: Logger;
  /** Short name for the logs: "policy" gives "policy watch failed", "policy relist failed". */
  name: string;
  /** What the prefix holds, for the logs: "policy data" gives "cannot list the policy data yet". */
  what: string;
  handlers: ListWatchHandlers;
  /** Keys per list request. Default 1000. */
  pageSize?: number;
  /** Deletes carry the value they deleted (e.g. the etcd lease it was bound to). */
  withPreviousKV?: boolean;
  /** First relist back-off; doubles per failure up to maxBackoffMs. Defaults 500 / 10 000. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** One list request (one page) slower than this counts as failed. Default 10 000. */
  requestTimeoutMs?: number;
}

/** A prefix listed page by page at one revision. */
export interface PagedListing {
  kvs: IKeyValue[];
  revision: string;
  /** How many range requests it took. */
  pages: number;
}

export const DEFAULT_PAGE_SIZE = 1000;

/**
 * Lists `prefix` in pages of `pageSize` keys, all at the revision of the first page.
 * A compaction past that revision between pages fails the listing (etcd refuses the
 * read); the caller lists again.
 */
export async function listPaged(client: Etcd3, prefix: string, o: { pageSize?: number; requestTimeoutMs?: number; what?: string } = {}): Promise<PagedListing> {
  const pageSize = o.pageSize ?? DEFAULT_PAGE_SIZE;
  const end = Range.prefix(prefix).end;
  const kvs: IKeyValue[] = [];
  let from: Buffer = Buffer.from(prefix);
  let revision: string | undefined;
  for (let pages = 1; ; pages++) {
    const req = client.getAll().inRange(new Range(from, end)).limit(pageSize);
    if (revision !== undefined) req.revision(revision);
    const res = await withTimeout(req.exec(), o.requestTimeoutMs ?? 10_000, `listing the ${o.what ?? prefix}`);
    revision ??= res.header.revision;
    for (const kv of res.kvs) kvs.push(kv);
    const last = res.kvs.at(-1);
    if (!res.more || last === undefined) return { kvs, revision, pages };
    // The smallest key after `last`: the next page starts there.
    from = Buffer.concat([last.key, Buffer.from([0])]);
  }
}

export class EtcdListWatch {
  private readonly o: EtcdListWatchOptions;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private watcher: Watcher | undefined;
  private connected = false;
  private relisting = false;
  private stopping = false;
  private lists = 0;
  private starting: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Lists and events are handed over one after another, each awaited. */
  private applying: Promise<void> = Promise.resolve();

  constructor(o: EtcdListWatchOptions) {
    this.o = o;
    this.initialBackoffMs = o.initialBackoffMs ?? 500;
    this.maxBackoffMs = o.maxBackoffMs ?? 10_000;
  }

  /** True while a watch is connected; false during an outage or a relist. */
  get live(): boolean {
    return this.connected && !this.relisting;
  }

  /** How many listings the consumer has been handed (the first one included). */
  get listCount(): number {
    return this.lists;
  }

  /**
   * Lists and starts watching; resolves once the first listing has been handed over (and
   * its handler has finished), retrying with back-off while etcd does not answer. Rejects
   * only if stop() comes first.
   */
  start(): Promise<void> {
    this.starting ??= this.relistLoop().then(() => {
      if (this.lists === 0) throw new Error(`${this.o.name} watch stopped before its first list`);
    });
    return this.starting;
  }

  /** Stops watching; no handler is called once this returns. The etcd client is the caller's to close. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const w = this.watcher;
    this.watcher = undefined;
    this.connected = false;
    w?.removeAllListeners();
    await cancelWithin(w, 2000);
  }

  /** Runs `step` after every step queued before it; a failing step is logged and the queue goes on. */
  private inOrder(step: () => void | Promise<void>): Promise<void> {
    const next = this.applying.then(() => (this.stopping ? undefined : step()));
    this.applying = next.catch((err: unknown) => {
      if (!this.stopping) this.o.log.error({ err: (err as Error).message }, `applying a ${this.o.name} change failed`);
    });
    return this.applying;
  }

  private async listAndWatch(): Promise<void> {
    const o = this.o;
    const listing = await listPaged(o.client, o.prefix, { ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}), ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}), what: o.what });
    if (this.stopping) return;
    await this.inOrder(() => o.handlers.list(listing.kvs, listing.revision));
    if (this.stopping) return;
    this.lists++;
    let b = o.client
      .watch()
      .prefix(o.prefix)
      .startRevision((BigInt(listing.revision) + 1n).toString());
    if (o.withPreviousKV) b = b.withPreviousKV();
    const w = b.watcher();
    this.watcher = w;
    w.on("put", (kv: IKeyValue, previous?: IKeyValue) => void this.inOrder(() => o.handlers.put(kv, previous)));
    w.on("delete", (kv: IKeyValue, previous?: IKeyValue) => void this.inOrder(() => o.handlers.delete(kv, previous)));
    w.on("connected", () => {
      this.connected = true;
    });
    w.on("disconnected", (err: Error) => {
      o.log.warn({ err: err.message }, `${o.name} watch lost its connection; relisting once etcd answers (keeping the current snapshot)`);
      void this.restart();
    });
    // Also a cancellation by etcd, e.g. "Watcher canceled: ... compacted".
    w.on("error", (err: Error) => {
      o.log.warn({ err: err.message }, `${o.name} watch failed; relisting (keeping the current snapshot)`);
      void this.restart();
    });
  }

  private async restart(): Promise<void> {
    if (this.stopping || this.relisting) return;
    this.relisting = true;
    this.connected = false;
    // A watcher that reported an error may already be detached by etcd3: cancelling it
    // can wait forever, so drop it without waiting.
    const old = this.watcher;
    this.watcher = undefined;
    abandonWatcher(old);
    try {
      await this.relistLoop();
    } finally {
      this.relisting = false;
    }
  }

  private async relistLoop(): Promise<void> {
    for (let delay = this.initialBackoffMs; !this.stopping; delay = Math.min(delay * 2, this.maxBackoffMs)) {
      try {
        await this.listAndWatch();
        return;
      } catch (err) {
        if (this.stopping) return;
        this.o.log.warn({ err: (err as Error).message, retryInMs: delay }, this.lists > 0 ? `${this.o.name} relist failed; keeping the last good snapshot` : `cannot list the ${this.o.what} yet`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }
}

/** Cancels a watcher, but never waits longer than `ms` (a half-dead connection may never answer). */
async function cancelWithin(w: Watcher | undefined, ms: number): Promise<void> {
  if (!w) return;
  await Promise.race([w.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, ms).unref())]);
}

/**
 * Lets go of a watcher that reported an error: etcd3 may already have detached it, so
 * cancelling can wait forever; its events are ignored from now on and the cancel is not awaited.
 */
function abandonWatcher(w: Watcher | undefined): void {
  w?.removeAllListeners();
  void cancelWithin(w, 2000);
}
