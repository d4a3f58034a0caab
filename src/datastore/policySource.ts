/**
 * The agent's view of everything the policy engine reads from etcd (etcd mode):
 * Namespaces, Pods, NetworkPolicies, every later registry kind (generically), and the
 * workload endpoints the CNI plugin records. It lists the whole prefix, then watches it
 * from the listing's revision + 1, keeps an in-memory snapshot and emits "changed" once
 * per change (coalescing is the caller's job).
 *
 * Fail closed, stay up:
 * - Every stored value is validated (JSON, the kind's zod schema, name/namespace matching
 *   the key). An invalid value is logged and never crashes the source. If the key had a
 *   valid value before, that last good version stays in the snapshot (so a policy broken
 *   by a bad write keeps isolating what it isolated); if it never had one, the object is
 *   listed in the snapshot's `refused` (kind, namespace, name, reason) and left out of
 *   `objects`: buildPolicyModel stands a fail-closed deny-all in for a policy of any kind.
 *   `sluicectl apply` refuses such objects, so only a direct etcd write gets here.
 * - A watch that fails, is cancelled (e.g. its revision was compacted) or loses its
 *   connection is dropped and replaced by a fresh list + watch, retried with exponential
 *   back-off. Until a list succeeds the last good snapshot stays in place: while etcd is
 *   unreachable the agent keeps enforcing what it last knew.
 * - Values of LARGE_OBJECT_BYTES or more (a policy may take 1.5 MiB) are validated in a
 *   worker thread (offThreadValidation.ts), so the event loop stays free meanwhile. Events
 *   still apply one at a time in etcd's order: a later event waits for an earlier one's
 *   validation. A value over MAX_OBJECT_BYTES is refused unread.
 * - Namespaces referenced by pods, endpoints or policies but with no Namespace object
 *   (etcd mode lets the CNI plugin record pods in namespaces nobody created) appear as
 *   implicit namespaces carrying only the kubernetes.io/metadata.name label, which is
 *   what the API server would have given them.
 */
import { EventEmitter } from "node:events";
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { Logger } from "pino";
import { parseWorkloadEndpointRecord } from "../config/endpointSchema.js";
import type { NamespaceObject, NetworkPolicyObject, PodObject } from "../config/k8sSchemas.js";
import { type KubeObject, type ResourceKind, KINDS, namespaceKind, networkPolicyKind, podKind } from "../config/resourceKinds.js";
import { NAMESPACE_NAME_LABEL, type NamespaceInfo, type PodEndpoint, type WorkloadEndpointRecord } from "../model/endpoint.js";
import { joinEndpoints } from "../model/joinEndpoints.js";
import { abandonWatcher, cancelWithin } from "./etcdClient.js";
import { decodeStoredObjectOffThread, parseResourceKey } from "./etcdResources.js";
import { WorkerThread } from "../util/workerThread.js";
import { SLUICE_PREFIX } from "./resourceKeys.js";

// The snapshot types live in src/model (policy/ reads them and may import no datastore).
export type { InvalidValue, PolicySnapshot, RefusedObject } from "../model/policySnapshot.js";
import type { InvalidValue, PolicySnapshot, RefusedObject } from "../model/policySnapshot.js";

export interface PolicySourceChange {
  cause: "list" | "put" | "delete";
  /** The etcd key, for put/delete. */
  key?: string;
  /** "NetworkPolicy", "Pod", ... or "WorkloadEndpoint", for put/delete. */
  kind?: string;
  revision: string;
}

export interface PolicySourceOptions {
  client: Etcd3;
  log: Logger;
  prefix?: string;
  kinds?: readonly ResourceKind[];
  /** First relist back-off; doubles per failure up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A list (or a watch creation) slower than this counts as failed. */
  requestTimeoutMs?: number;
}


/** Logged when a large object comes with exact copies in its ORed lists (NetworkPolicy rules, peers, ports). */
export const COPIES_IGNORED = "exact copies of rules, peers or ports in the object are ignored (they add nothing)";

type Entry = { type: "object"; kind: ResourceKind; object: KubeObject } | { type: "workloadendpoint"; record: WorkloadEndpointRecord };
type Decoded = { ok: true; entry: Entry } | { ok: false; reason: string } | undefined;

/**
 * Events: "changed" (PolicySourceChange) once per change that altered the snapshot,
 * "synced" once after the first complete list.
 */
export class PolicySource extends EventEmitter {
  private readonly client: Etcd3;
  private readonly log: Logger;
  readonly prefix: string;
  private readonly kinds: readonly ResourceKind[];
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly requestTimeoutMs: number;

  private entries = new Map<string, Entry>();
  private readonly invalid = new Map<string, string>();
  private revision = "0";
  private cached: PolicySnapshot | undefined;
  private watcher: Watcher | undefined;
  private watchConnected = false;
  private isSynced = false;
  private stopping = false;
  private restarting = false;
  private starting: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private relists = 0;
  /** Where large values are validated (started on the first one). */
  private readonly validator = new WorkerThread("sluice-validate");
  /** Lists and events apply one after another, in order, even while one awaits its validation. */
  private applying: Promise<void> = Promise.resolve();

  constructor(o: PolicySourceOptions) {
    super();
    this.client = o.client;
    this.log = o.log;
    this.prefix = (o.prefix ?? SLUICE_PREFIX).replace(/\/$/, "");
    this.kinds = o.kinds ?? KINDS;
    this.initialBackoffMs = o.initialBackoffMs ?? 500;
    this.maxBackoffMs = o.maxBackoffMs ?? 10_000;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
  }

  override on(event: "changed", listener: (c: PolicySourceChange) => void): this;
  override on(event: "synced", listener: () => void): this;
  override on(event: string, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  override once(event: "changed", listener: (c: PolicySourceChange) => void): this;
  override once(event: "synced", listener: () => void): this;
  override once(event: string, listener: (...args: never[]) => void): this {
    return super.once(event, listener as (...args: unknown[]) => void);
  }

  /** True once a complete list has been loaded (stays true through outages: the snapshot is the last good one). */
  get synced(): boolean {
    return this.isSynced;
  }

  /** True while a watch is connected; false during an outage or a relist. */
  get live(): boolean {
    return this.watchConnected && !this.restarting;
  }

  /** How many times the source has listed (the first list included). */
  get listCount(): number {
    return this.relists;
  }

  /**
   * Lists and starts watching; resolves after the first successful list (retrying with
   * back-off while etcd is unreachable). Rejects only if stop() comes first.
   */
  start(): Promise<void> {
    this.starting ??= this.relistLoop().then(() => {
      if (!this.isSynced) throw new Error("policy source stopped before its first list");
    });
    return this.starting;
  }

  /** Stops watching. The snapshot stays readable. The etcd client is the caller's to close. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    const w = this.watcher;
    this.watcher = undefined;
    this.watchConnected = false;
    w?.removeAllListeners();
    await cancelWithin(w, 2000);
    await this.validator.close();
  }

  /** Runs `step` after every step queued before it (a failing step is logged, the queue goes on). */
  private inOrder(step: () => void | Promise<void>): Promise<void> {
    const next = this.applying.then(step);
    this.applying = next.catch((err: Error) => {
      if (!this.stopping) this.log.error({ err: err.message }, "applying a policy data change failed");
    });
    return next;
  }

  /** Stored values currently refused by validation. */
  invalidValues(): InvalidValue[] {
    return [...this.invalid].sort(([a], [b]) => cmp(a, b)).map(([key, reason]) => ({ key, reason, keptLastGood: this.entries.has(key) }));
  }

  snapshot(): PolicySnapshot {
    this.cached ??= this.build();
    return this.cached;
  }

  /** The objects of one registered kind, typed. */
  objectsOf<T extends KubeObject>(kind: ResourceKind<T>): T[] {
    return [...(this.snapshot().objects[kind.kind] ?? [])] as T[];
  }

  private build(): PolicySnapshot {
    const keys = [...this.entries.keys()].sort(cmp);
    const objects: Record<string, KubeObject[]> = {};
    for (const k of this.kinds) objects[k.kind] = [];
    const records: WorkloadEndpointRecord[] = [];
    for (const key of keys) {
      const e = this.entries.get(key) as Entry;
      if (e.type === "workloadendpoint") records.push(e.record);
      else (objects[e.kind.kind] ??= []).push(e.object);
    }
    const pods = (objects[podKind.kind] ?? []) as PodObject[];
    const networkPolicies = (objects[networkPolicyKind.kind] ?? []) as NetworkPolicyObject[];
    const { namespaces, endpoints } = namespacesAndEndpoints(this.kinds, objects, records);
    return {
      revision: this.revision,
      namespaces,
      endpoints,
      networkPolicies,
      pods,
      workloadEndpoints: records,
      objects,
      refused: this.refusedObjects(),
    };
  }

  /**
   * The registry object a refused key stands for, when it fits the layout. The policy
   * model decides what an unreadable object means (buildPolicyModel: a fail-closed
   * stand-in for a policy of any kind, a warning for the rest).
   */
  private refusedObject(key: string, reason: string): RefusedObject | undefined {
    const info = parseResourceKey(key, this.prefix, this.kinds);
    if (info?.type !== "object") return undefined;
    return { kind: info.kind.kind, namespace: info.namespace, name: info.name, reason };
  }

  /** Refused objects without a last good version, sorted by key. */
  private refusedObjects(): RefusedObject[] {
    const out: RefusedObject[] = [];
    for (const [key, reason] of [...this.invalid].sort(([a], [b]) => cmp(a, b))) {
      const r = this.entries.has(key) ? undefined : this.refusedObject(key, reason);
      if (r) out.push(r);
    }
    return out;
  }

  private async decode(kv: IKeyValue): Promise<Decoded> {
    const key = kv.key.toString();
    const info = parseResourceKey(key, this.prefix, this.kinds);
    if (!info) return { ok: false, reason: "key does not fit the layout" };
    if (info.type === "other") return undefined; // not a kind this build knows (e.g. written by a newer sluicectl)
    if (info.type === "object") {
      let d: Awaited<ReturnType<typeof decodeStoredObjectOffThread>>;
      try {
        d = await decodeStoredObjectOffThread(this.validator, info.kind, info.namespace, info.name, kv);
      } catch (err) {
        // The thread failed (or took too long): the value counts as unreadable, never as absent.
        d = { ok: false, reason: `cannot be validated: ${(err as Error).message}` };
      }
      if (d.ok) this.noteDropped(key, d.dropped.map((i) => `${i.path}: ${i.message}`).join("; "));
      if (d.ok && d.copies) this.log.warn({ key, copies: d.copies }, COPIES_IGNORED);
      return d.ok ? { ok: true, entry: { type: "object", kind: info.kind, object: d.object } } : d;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value.toString());
    } catch (err) {
      return { ok: false, reason: `not JSON: ${(err as Error).message}` };
    }
    const r = parseWorkloadEndpointRecord(raw);
    if (!r.ok) return r;
    const rec = r.record;
    if (rec.node !== info.node || rec.namespace !== info.namespace || rec.pod !== info.pod || rec.ifName !== info.ifName) return { ok: false, reason: "node, namespace, pod or ifName does not match the key" };
    return { ok: true, entry: { type: "workloadendpoint", record: rec } };
  }

  /** Values dropped from each key's current object, so the warning is logged once per change. */
  private readonly dropped = new Map<string, string>();
  private noteDropped(key: string, text: string): void {
    if ((this.dropped.get(key) ?? "") === text) return;
    if (text) this.dropped.set(key, text);
    else this.dropped.delete(key);
    if (text) this.log.warn({ key, dropped: text }, "values no host may have are dropped from the object; the rest of it applies");
  }

  /** Records a refused value; logs it unless it was already refused for the same reason. */
  private refuse(key: string, reason: string, hadGood: boolean): void {
    if (this.invalid.get(key) === reason) return;
    this.invalid.set(key, reason);
    if (hadGood) this.log.warn({ key, reason }, "invalid value in etcd; keeping its last good version");
    else this.log.warn({ key, reason }, "invalid value in etcd; ignoring it");
  }

  private kindOf(e: Entry | undefined): string | undefined {
    return e === undefined ? undefined : e.type === "object" ? e.kind.kind : "WorkloadEndpoint";
  }

  private onPut(kv: IKeyValue): void {
    void this.inOrder(async () => {
      const d = await this.decode(kv);
      if (!this.stopping) this.applyPut(kv, d);
    });
  }

  private applyPut(kv: IKeyValue, d: Decoded): void {
    const key = kv.key.toString();
    if (d === undefined) return;
    this.revision = kv.mod_revision;
    if (!d.ok) {
      const hadGood = this.entries.has(key);
      const before = this.invalid.get(key);
      this.refuse(key, d.reason, hadGood);
      // Without a last good version the key is now (or for a new reason) a refused object.
      if (!hadGood && before !== d.reason && this.refusedObject(key, d.reason) !== undefined) this.changed({ cause: "put", key, revision: this.revision });
      return;
    }
    if (this.invalid.delete(key)) this.log.info({ key }, "value in etcd is valid again");
    this.entries.set(key, d.entry);
    this.changed({ cause: "put", key, kind: this.kindOf(d.entry), revision: this.revision });
  }

  private onDelete(kv: IKeyValue): void {
    void this.inOrder(() => {
      if (!this.stopping) this.applyDelete(kv);
    });
  }

  private applyDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    const wasRefused = this.invalid.delete(key) && !this.entries.has(key) && this.refusedObject(key, "") !== undefined;
    const old = this.entries.get(key);
    if (kv.mod_revision) this.revision = kv.mod_revision;
    if (!this.entries.delete(key)) {
      if (wasRefused) this.changed({ cause: "delete", key, revision: this.revision });
      return;
    }
    this.changed({ cause: "delete", key, kind: this.kindOf(old), revision: this.revision });
  }

  private changed(c: PolicySourceChange): void {
    this.cached = undefined;
    try {
      this.emit("changed", c);
    } catch (err) {
      // A listener's bug must not take the watch down with it.
      this.log.error({ err: (err as Error).message }, "a policy source listener failed");
    }
  }

  /** Replaces the whole state with a listing; invalid values keep their last good version. */
  private async replaceAll(kvs: IKeyValue[], revision: string): Promise<void> {
    const decoded: Decoded[] = [];
    for (const kv of kvs) decoded.push(await this.decode(kv));
    if (this.stopping) return;
    const next = new Map<string, Entry>();
    const seen = new Set<string>();
    for (const [i, kv] of kvs.entries()) {
      const key = kv.key.toString();
      const d = decoded[i];
      if (d === undefined) continue;
      seen.add(key);
      if (d.ok) {
        if (this.invalid.delete(key)) this.log.info({ key }, "value in etcd is valid again");
        next.set(key, d.entry);
        continue;
      }
      const good = this.entries.get(key);
      if (good) next.set(key, good);
      this.refuse(key, d.reason, good !== undefined);
    }
    for (const key of [...this.invalid.keys()]) if (!seen.has(key)) this.invalid.delete(key);
    this.entries = next;
    this.revision = revision;
    this.relists++;
    const first = !this.isSynced;
    this.isSynced = true;
    this.log.info({ revision, keys: next.size, invalid: this.invalid.size }, first ? "policy data listed" : "policy data relisted");
    this.changed({ cause: "list", revision });
    if (first) {
      try {
        this.emit("synced");
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "a policy source listener failed");
      }
    }
  }

  private async listAndWatch(): Promise<void> {
    const prefix = `${this.prefix}/`;
    const res = await withTimeout(this.client.getAll().prefix(prefix).exec(), this.requestTimeoutMs, "listing the policy data");
    if (this.stopping) return;
    await this.inOrder(() => this.replaceAll(res.kvs, res.header.revision));
    if (this.stopping) return;
    const w = this.client
      .watch()
      .prefix(prefix)
      .startRevision((BigInt(res.header.revision) + 1n).toString())
      .watcher();
    this.watcher = w;
    w.on("put", (kv: IKeyValue) => this.onPut(kv));
    w.on("delete", (kv: IKeyValue) => this.onDelete(kv));
    w.on("connected", () => {
      this.watchConnected = true;
    });
    w.on("disconnected", (err: Error) => {
      this.log.warn({ err: err.message }, "policy watch lost its connection; relisting once etcd answers (keeping the current snapshot)");
      void this.restartWatch();
    });
    w.on("error", (err: Error) => {
      this.log.warn({ err: err.message }, "policy watch failed; relisting (keeping the current snapshot)");
      void this.restartWatch();
    });
  }

  private async restartWatch(): Promise<void> {
    if (this.stopping || this.restarting) return;
    this.restarting = true;
    this.watchConnected = false;
    // A watcher that reported an error may already be detached by etcd3: cancelling it
    // can wait forever, so drop it without waiting.
    const old = this.watcher;
    this.watcher = undefined;
    abandonWatcher(old);
    try {
      await this.relistLoop();
    } finally {
      this.restarting = false;
    }
  }

  private async relistLoop(): Promise<void> {
    for (let delay = this.initialBackoffMs; !this.stopping; delay = Math.min(delay * 2, this.maxBackoffMs)) {
      try {
        await this.listAndWatch();
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, retryInMs: delay }, this.isSynced ? "policy relist failed; keeping the last good snapshot" : "cannot list the policy data yet");
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


/**
 * The namespaces and endpoints of a snapshot, alike for every datastore: Namespace objects
 * (labelled with their name) plus implicit namespaces for names that objects or records
 * use without a Namespace object, and the records joined with their Pods; an endpoint in a
 * namespace without its object has unknown labels (metadataKnown false).
 */
export function namespacesAndEndpoints(kinds: readonly ResourceKind[], objects: Readonly<Record<string, readonly KubeObject[]>>, records: readonly WorkloadEndpointRecord[]): { namespaces: NamespaceInfo[]; endpoints: PodEndpoint[] } {
  const nsObjects = (objects[namespaceKind.kind] ?? []) as NamespaceObject[];
  const pods = (objects[podKind.kind] ?? []) as PodObject[];
  const namespaces = new Map<string, NamespaceInfo>();
  for (const n of nsObjects) namespaces.set(n.metadata.name, { name: n.metadata.name, labels: { ...n.metadata.labels, [NAMESPACE_NAME_LABEL]: n.metadata.name } });
  const implicit = (name: string | undefined): void => {
    if (name !== undefined && !namespaces.has(name)) namespaces.set(name, { name, labels: { [NAMESPACE_NAME_LABEL]: name } });
  };
  const declared = new Set(namespaces.keys());
  for (const r of records) implicit(r.namespace);
  for (const k of kinds) if (k.namespaced) for (const o of objects[k.kind] ?? []) implicit(o.metadata.namespace);
  // A pod in a namespace whose object is missing has unknown namespace labels: like a
  // pod without its Pod object, it matches no selector and is isolated (fail closed).
  const endpoints = joinEndpoints(records, pods).map((ep) => (declared.has(ep.namespace) ? ep : { ...ep, metadataKnown: false }));
  return { namespaces: [...namespaces.values()].sort((a, b) => cmp(a.name, b.name)), endpoints };
}

/** Rejects when `p` has not settled within `ms` (a late failure of `p` is swallowed). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined); // a late failure after the timeout must not go unhandled
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms}ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
