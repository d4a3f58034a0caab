/**
 * One Kubernetes collection (nodes, pods, a CRD...) listed and watched with the client
 * library's informer (ListWatch + Watch), made to survive what the informer leaves to its
 * user:
 * - 410 Gone (an ERROR event or status during a watch): the informer relists by itself;
 *   every listing reaches `handlers.list` as a whole, so the owner replaces its state.
 * - Any other failure (list or watch: the API server unreachable, 5xx, a reset) stops the
 *   informer: it is restarted with exponential back-off, resuming the watch from its last
 *   resourceVersion (a relist if that is too old by then). The owner's state stays as it
 *   was meanwhile (keep the dataplane through an outage).
 * - A watch that goes quiet because the network dropped (no FIN, no RST): the library
 *   (2.x) aborts a watch that received nothing for 30 s and the informer reopens it from
 *   its resourceVersion at once (a quiet collection's watch is renewed that way too; the
 *   server's bookmarks come about once a minute). Watches also ask the server to end them
 *   after `watchTimeoutSeconds` (as client-go does) and are aborted client-side if they
 *   outlive that by a grace period (a server that keeps sending but never ends them).
 * - The informer (2.x) waits before reopening a watch that ended cleanly without an event
 *   (1 s, doubling to 30 s: no tight loop against a server that ends watches at once);
 *   stop() cuts that wait short, and no watch is opened once stopped.
 * - A 404 on a list is not an empty list: it is a failure like any other (the last state
 *   stays; before the first list the collection is not synced), unless discovery (the
 *   group/version's resource list) confirms that the server does not serve the resource
 *   (`absenceByDiscovery`, for CRDs that may not be installed): only then is it handed
 *   over as empty (a deleted CRD takes its objects with it), and picked up once it appears.
 *   A load balancer, an aggregation layer or a half-started API server answering 404 for a
 *   served resource therefore never empties a set of policies.
 * - Objects come as the API server sends them (raw JSON, lists and events alike); list
 *   items get their apiVersion/kind filled in (the server omits them for built-in types).
 * - A handler that throws is logged; it never stops the watch or the process.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { KubeConfig, KubernetesListObject, KubernetesObject, ListWatch } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { collectionPath, describeKubeError, kubeErrorStatus, kubeGetJson, loadK8s } from "./kubeClient.js";

/** What discovery says of one resource: listed in its group/version, or not served there, or unknown (discovery failed). */
export type Served = "served" | "absent" | "unknown";

/** An object as the API server sends it. */
export interface RawKubeObject extends KubernetesObject {
  [k: string]: unknown;
}

export interface CollectionHandlers {
  /** A complete listing (the first one, or a relist): replaces everything known of the collection. */
  list(items: RawKubeObject[], resourceVersion: string): void;
  /** An object was added or changed. */
  upsert(o: RawKubeObject): void;
  /** An object was deleted (the last state the server had). */
  remove(o: RawKubeObject): void;
}

export interface CollectionResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export interface KubeCollectionWatchOptions {
  kc: KubeConfig;
  log: Logger;
  resource: CollectionResource;
  handlers: CollectionHandlers;
  labelSelector?: string;
  fieldSelector?: string;
  /** First restart delay after a failure; doubles per failure up to maxBackoffMs. Default 500. */
  initialBackoffMs?: number;
  /** Default 10 000. */
  maxBackoffMs?: number;
  /** A list slower than this counts as failed. Default 30 000. */
  requestTimeoutMs?: number;
  /** The server ends each watch after this; it is then reopened from its resourceVersion. Default 300 (+ up to 25% jitter). */
  watchTimeoutSeconds?: number;
  /**
   * A list answered 404 asks discovery whether the server serves the resource at all;
   * when it does not (its CRD is not installed, or was deleted), the collection counts as
   * listed and empty, so one missing optional kind does not hold everything else back. It
   * is retried with back-off and picked up once it appears. When discovery lists the
   * resource, or cannot be read, the 404 is an error: the last state stays.
   */
  absenceByDiscovery?: boolean;
}

interface Events {
  /** live: a watch is connected (false after a failure until a watch connects again). */
  state: [live: boolean];
}

export class KubeCollectionWatch extends EventEmitter<Events> {
  private readonly o: KubeCollectionWatchOptions;
  private informer: ListWatch<RawKubeObject> | undefined;
  private isSynced = false;
  private isLive = false;
  private lists = 0;
  private isAbsent = false;
  /** When a watch's 404 last turned into a relist (see TrackedWatch). */
  private relistedAfter404At = 0;
  private stopping = false;
  private backoff: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private firstList: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void };
  private starting: Promise<void> | undefined;
  /** The current watch's controller and its client-side deadline. */
  private current: { controller: AbortController; deadline: NodeJS.Timeout } | undefined;
  /** The informer's pending reconnect waits (ends them early). */
  private readonly waits = new Set<() => void>();

  constructor(o: KubeCollectionWatchOptions) {
    super();
    this.o = o;
    this.backoff = o.initialBackoffMs ?? 500;
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined);
    this.firstList = { promise, resolve, reject };
  }

  get what(): string {
    const r = this.o.resource;
    return r.group ? `${r.plural}.${r.group}` : r.plural;
  }

  /** True once a complete list has been handed over (stays true through outages). */
  get synced(): boolean {
    return this.isSynced;
  }

  /** True while a watch is connected. */
  get live(): boolean {
    return this.isLive;
  }

  /** How many complete lists were handed over (first list included). */
  get listCount(): number {
    return this.lists;
  }

  /** Starts listing and watching; resolves after the first complete list (retrying meanwhile), rejects if stopped first. */
  start(): Promise<void> {
    this.starting ??= this.begin();
    return this.starting.then(() => this.firstList.promise);
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.dropCurrent();
    for (const end of [...this.waits]) end();
    this.firstList.reject(new Error(`watch of ${this.what} stopped before its first list`));
    this.setLive(false);
    await this.informer?.stop();
  }

  private async begin(): Promise<void> {
    const k8s = await loadK8s();
    const { kc, resource } = this.o;
    const path = collectionPath(resource);
    const timeoutSeconds = this.o.watchTimeoutSeconds ?? 300;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    class TrackedWatch extends k8s.Watch {
      override async watch(p: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, obj: RawKubeObject, raw?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
        // The informer opens the next watch after its reconnect wait without asking whether it was stopped meanwhile.
        if (self.stopping) return new AbortController();
        let ended = false;
        // `done` may run before super.watch returns (the request failed at once).
        const box: { controller?: AbortController } = {};
        const jittered = Math.round(timeoutSeconds * (1 + Math.random() * 0.25));
        box.controller = await super.watch(p, { ...query, allowWatchBookmarks: true, timeoutSeconds: jittered }, callback, (err: unknown) => {
          ended = true;
          if (box.controller !== undefined && self.current?.controller === box.controller) self.dropCurrent();
          // A watch answered 404 (the resource went away, or something in front of the
          // server lost it) is followed by a list, as client-go's reflector does, so the
          // list's 404 handling decides: never a watch resumed against nothing forever. At
          // most once per maxBackoffMs: otherwise it is a failure with back-off like any other.
          const relist = kubeErrorStatus(err) === 404 && Date.now() - self.relistedAfter404At >= (self.o.maxBackoffMs ?? 10_000);
          if (relist) self.relistedAfter404At = Date.now();
          done(relist ? Object.assign(new Error("watch answered 404; relisting"), { statusCode: 410 }) : err);
        });
        if (!ended && !self.stopping) self.onConnected(box.controller, jittered);
        return box.controller;
      }
    }
    const listFn = async (): Promise<KubernetesListObject<RawKubeObject>> => {
      const query: Record<string, string> = {};
      if (this.o.labelSelector) query["labelSelector"] = this.o.labelSelector;
      if (this.o.fieldSelector) query["fieldSelector"] = this.o.fieldSelector;
      let body: unknown;
      try {
        body = await kubeGetJson(kc, path, query, this.o.requestTimeoutMs ?? 30_000);
      } catch (err) {
        if (kubeErrorStatus(err) === 404 && !this.stopping) await this.onNotFound();
        throw err;
      }
      this.isAbsent = false;
      const list = body as { items?: unknown; metadata?: { resourceVersion?: unknown } };
      if (!Array.isArray(list.items)) throw new Error(`GET ${path}: the answer is not a list`);
      const apiVersion = resource.group ? `${resource.group}/${resource.version}` : resource.version;
      const items = (list.items as RawKubeObject[]).map((i) => ({ ...i, apiVersion: i.apiVersion ?? apiVersion, kind: i.kind ?? resource.kind }));
      const rv = typeof list.metadata?.resourceVersion === "string" ? list.metadata.resourceVersion : "";
      if (!this.stopping) this.handOver(items, rv);
      return { apiVersion, kind: `${resource.kind}List`, metadata: { resourceVersion: rv }, items };
    };
    const informer = new k8s.ListWatch<RawKubeObject>(path, new TrackedWatch(kc), listFn, false, this.o.labelSelector, this.o.fieldSelector, { delayFn: (ms) => this.wait(ms) });
    informer.on("add", (o) => this.call("upsert", () => this.o.handlers.upsert(o)));
    informer.on("update", (o) => this.call("upsert", () => this.o.handlers.upsert(o)));
    informer.on("delete", (o) => this.call("remove", () => this.o.handlers.remove(o)));
    informer.on("error", (err) => this.onError(err));
    this.informer = informer;
    if (this.stopping) return;
    informer.start().catch((err: unknown) => this.onError(err));
  }

  /** The informer's reconnect wait, ended early by stop(). */
  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const end = (): void => {
        clearTimeout(timer);
        this.waits.delete(end);
        resolve();
      };
      const timer = setTimeout(end, ms);
      this.waits.add(end);
    });
  }

  /**
   * A list answered 404: empty only when discovery confirms the resource is not served;
   * otherwise the caller's rethrow makes it a failure like any other (state kept, retried).
   */
  private async onNotFound(): Promise<void> {
    const served = this.o.absenceByDiscovery ? await discover(this.o.kc, this.o.resource, this.o.requestTimeoutMs ?? 30_000) : "served";
    if (this.stopping) return;
    if (served === "absent") {
      if (this.isAbsent) return;
      this.isAbsent = true;
      this.o.log.warn({ resource: this.what }, "the API server does not serve this resource (discovery does not list it: CRD not installed?); treating it as empty until it appears");
      this.handOver([], "");
      return;
    }
    this.isAbsent = false;
    // Logged at the retry (onError) with the 404 itself; this says why it is not an empty list.
    this.o.log.warn({ resource: this.what, discovery: served }, this.isSynced ? "list answered 404 but the resource is not known to be absent; keeping the last known state" : "list answered 404 but the resource is not known to be absent; not synced until it lists");
  }

  private handOver(items: RawKubeObject[], rv: string): void {
    this.lists++;
    const first = !this.isSynced;
    this.call("list", () => this.o.handlers.list(items, rv));
    this.isSynced = true;
    this.o.log.info({ resource: this.what, items: items.length, resourceVersion: rv }, first ? "listed" : "relisted");
    if (first) this.firstList.resolve();
  }

  private onConnected(controller: AbortController, timeoutSeconds: number): void {
    this.dropCurrent();
    // The server ends the watch after timeoutSeconds; if nothing ended it well after that, the connection is dead.
    const deadline = setTimeout(() => {
      this.o.log.warn({ resource: this.what }, "watch outlived its timeout (connection lost?); reconnecting");
      controller.abort();
    }, (timeoutSeconds + 30) * 1000);
    deadline.unref();
    this.current = { controller, deadline };
    this.backoff = this.o.initialBackoffMs ?? 500;
    this.setLive(true);
  }

  private dropCurrent(): void {
    if (!this.current) return;
    clearTimeout(this.current.deadline);
    this.current = undefined;
  }

  private onError(err: unknown): void {
    if (this.stopping) return;
    this.setLive(false);
    if (this.restartTimer) return; // a restart is already scheduled
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.o.maxBackoffMs ?? 10_000);
    // A collection known to be absent is retried quietly (its warning was logged once).
    this.o.log[this.isAbsent ? "debug" : "warn"]({ resource: this.what, err: describeKubeError(err), retryInMs: delay }, this.isSynced ? "watch failed; keeping the last known state and retrying" : "cannot list yet; retrying");
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping) return;
      this.informer?.start().catch((e: unknown) => this.onError(e));
    }, delay);
  }

  private setLive(live: boolean): void {
    if (this.isLive === live) return;
    this.isLive = live;
    try {
      this.emit("state", live);
    } catch (err) {
      this.o.log.error({ resource: this.what, err: (err as Error).message }, "a watch state listener failed");
    }
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.o.log.error({ resource: this.what, handler: what, err: (err as Error).stack ?? String(err) }, "a watch handler failed");
    }
  }
}

/**
 * Whether the API server serves `r`, by its group/version's discovery document
 * (`/apis/<group>/<version>`, `/api/v1`): "absent" when that document is 404 or does not
 * list the plural, "served" when it lists it, "unknown" when discovery itself fails.
 */
export async function discover(kc: KubeConfig, r: CollectionResource, timeoutMs = 30_000): Promise<Served> {
  const path = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  let body: unknown;
  try {
    body = await kubeGetJson(kc, path, {}, timeoutMs);
  } catch (err) {
    return kubeErrorStatus(err) === 404 ? "absent" : "unknown";
  }
  const resources = (body as { resources?: unknown }).resources;
  if (!Array.isArray(resources)) return "unknown";
  return resources.some((x) => (x as { name?: unknown }).name === r.plural) ? "served" : "absent";
}
