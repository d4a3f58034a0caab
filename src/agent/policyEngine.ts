/**
 * The policy half of the agent (Felix's job), wired the one-way DESIGN way: the policy
 * source (datastore list/watch) keeps a snapshot; on every change the engine marks its
 * render stale and asks the agent for an apply; the apply renders the snapshot (pure, in
 * the agent's worker thread: policyRenderTask.ts) and hands chains and ipsets to the same
 * serial dataplane queue as everything else.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { PolicySnapshot } from "../model/policySnapshot.js";
import type { Family } from "../model/ip.js";
import type { PolicyRender } from "../render/policyContract.js";
import { WorkerThread } from "../util/workerThread.js";
import { type JsonText, RENDER_POLICY_TASK, type RenderPolicyReply, type RenderPolicyRequest, modelInputOf } from "./policyRenderTask.js";
import { ModelSender, RenderMirror } from "./renderExchange.js";

/** What the engine needs of a datastore: the etcd PolicySource or the Kubernetes KubePolicySource. */
export interface PolicyFeed {
  readonly synced: boolean;
  snapshot(): PolicySnapshot;
  on(event: "changed", listener: () => void): unknown;
  on(event: "synced", listener: () => void): unknown;
}

export class PolicyEngine extends EventEmitter {
  private cache: { snapshot: PolicySnapshot; families: string; renders: Map<Family, PolicyRender> } | undefined;
  private readonly thread = new WorkerThread("sluice-policy-render");
  /** The snapshot as last sent to the thread, and the renders as last received: both ends of the delta exchange. */
  private readonly sender = new ModelSender();
  private mirrors = new Map<Family, RenderMirror>();
  /** Pod addresses as of the last render, to find those that went away. */
  private addresses: Set<string> | undefined;

  constructor(
    private readonly feed: PolicyFeed,
    private readonly nodeName: string,
    private readonly sctpSupported: boolean,
    private readonly log: Logger,
  ) {
    super();
    feed.on("changed", () => this.emit("changed"));
    feed.on("synced", () => {
      log.info("policy data synced; programming policy");
      this.emit("changed");
    });
  }

  get synced(): boolean {
    return this.feed.synced;
  }

  /**
   * Pod addresses that were in the previous call's snapshot and are gone from the current
   * one (their conntrack entries must go after the rules are applied).
   */
  takeRemovedAddresses(): string[] {
    if (!this.feed.synced) return [];
    const now = new Set(this.feed.snapshot().endpoints.flatMap((e) => e.ips));
    const before = this.addresses;
    this.addresses = now;
    return before ? [...before].filter((a) => !now.has(a)) : [];
  }

  private lastWarnings = new Set<string>();
  /** The snapshot of the last renders() call. */
  private rendered: PolicySnapshot | undefined;

  /**
   * This node's endpoints (host interface, addresses, and the container of the record they
   * came from; "" when none did) in the snapshot of the last renders() call: once the
   * caller has applied that render, their chains are in place.
   */
  renderedLocalEndpoints(): Array<{ hostIface: string; containerId: string; ips: string[] }> {
    const snapshot = this.rendered;
    if (!snapshot) return [];
    const containers = new Map(snapshot.workloadEndpoints.filter((r) => r.node === this.nodeName).map((r) => [r.hostIface, r.containerId]));
    return snapshot.endpoints.filter((e) => e.node === this.nodeName).map((e) => ({ hostIface: e.hostIface, containerId: containers.get(e.hostIface) ?? "", ips: e.ips }));
  }

  /** The datastore revision of the snapshot of the last renders() call (once applied: what is in force). */
  renderedRevision(): string | undefined {
    return this.rendered?.revision;
  }

  /** Logs the warnings that were not there at the previous render. */
  private noteWarnings(warnings: readonly string[]): void {
    const now = new Set(warnings);
    for (const w of now) if (!this.lastWarnings.has(w)) this.log.warn({ warning: w }, "policy warning");
    this.lastWarnings = now;
  }

  /**
   * The render of each family, or undefined until the datastore has been listed once (the
   * caller then leaves the filter table as it is). Cached per snapshot: the source hands out
   * a new snapshot object whenever anything changed. Rendered in the worker thread; a
   * failure there rejects (the caller keeps the rules in place and retries).
   */
  async renders(families: readonly Family[]): Promise<ReadonlyMap<Family, PolicyRender> | undefined> {
    if (!this.feed.synced) return undefined;
    const snapshot = this.feed.snapshot();
    const key = families.join(",");
    if (this.cache && this.cache.snapshot === snapshot && this.cache.families === key) {
      this.rendered = snapshot;
      return this.cache.renders;
    }
    const started = performance.now();
    const out = await this.renderInThread(snapshot, families);
    this.noteWarnings(out.warnings);
    const renders = new Map(out.renders.map(([family, delta]) => {
      let mirror = this.mirrors.get(family);
      if (!mirror) this.mirrors.set(family, (mirror = new RenderMirror()));
      return [family, mirror.apply(delta)];
    }));
    const local = snapshot.endpoints.filter((e) => e.node === this.nodeName).length;
    this.log.debug({ ms: Math.round(performance.now() - started), renderMs: Math.round(out.ms), endpoints: snapshot.endpoints.length, local, policies: out.policies, revision: snapshot.revision }, "policy rendered");
    void this.logMemory();
    this.rendered = snapshot;
    this.cache = { snapshot, families: key, renders };
    return renders;
  }

  /**
   * One render in the thread, sent as a delta. A thread that does not hold what the delta
   * follows (it was restarted) asks for everything; any failure forgets what was sent, so
   * the next call sends everything too.
   */
  private async renderInThread(snapshot: PolicySnapshot, families: readonly Family[]): Promise<Exclude<RenderPolicyReply, { resync: true }>> {
    const model = modelInputOf(snapshot);
    for (let attempt = 0; ; attempt++) {
      const delta = this.sender.next(model);
      if (delta.base === 0) this.mirrors = new Map();
      const request: RenderPolicyRequest = { model: delta, nodeName: this.nodeName, families: [...families], sctpSupported: this.sctpSupported };
      let reply: RenderPolicyReply;
      try {
        reply = JSON.parse((await this.thread.call<JsonText>(RENDER_POLICY_TASK, { json: JSON.stringify(request) } satisfies JsonText)).json) as RenderPolicyReply;
      } catch (err) {
        this.sender.reset();
        throw err;
      }
      if (!reply.resync) return reply;
      this.sender.reset();
      if (attempt > 0) throw new Error("the render thread asked for a resync twice in a row");
      this.log.debug("render thread holds no snapshot (restarted); sending all of it");
    }
  }

  /**
   * Where the agent's memory is, in MiB, after a render: the process's resident set, the
   * main thread's V8 heap and the render thread's (its own isolate), and memory outside
   * the heaps (buffers). Debug level: it is for finding growth, not for every operator.
   */
  private async logMemory(): Promise<void> {
    if (!this.log.isLevelEnabled("debug")) return;
    const mib = (n: number): number => Math.round(n / 2 ** 20);
    const m = process.memoryUsage();
    const thread = await this.thread.heap().catch(() => undefined);
    this.log.debug(
      { rss: mib(m.rss), heapUsed: mib(m.heapUsed), heapTotal: mib(m.heapTotal), external: mib(m.external), renderThreadHeapUsed: thread && mib(thread.used), renderThreadHeapTotal: thread && mib(thread.total) },
      "memory (MiB)",
    );
  }

  /** Stops the render thread (a later render starts a new one). */
  async close(): Promise<void> {
    await this.thread.close();
  }
}
