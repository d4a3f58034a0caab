/**
 * The agent's view of everything the policy engine reads from etcd (etcd mode):
 * Namespaces, Pods, NetworkPolicies, every later registry kind (generically), and the
 * workload endpoints the CNI plugin records. It lists the whole prefix, then watches it
 * from the listing's revision + 1, keeps an in-memory snapshot and emits "changed" once
 * per change (coalescing is the caller's job).
 *
 * Fail closed, stay up:
 * - Every stored value is validated (JSON, the kind's zod schema, name/namespace matching
 *   the key). An invalid value is logged and never crashes the source. What is kept of it
 *   is the ValidatedObjectCache's (validatedObjectCache.ts, shared with the Kubernetes
 *   source): a key that had a valid value keeps that last good version (so a policy broken
 *   by a bad write keeps isolating what it isolated); one that never had one is listed in
 *   the snapshot's `refused` (kind, namespace, name, reason) and left out of `objects`:
 *   buildPolicyModel stands a fail-closed deny-all in for a policy of any kind.
 *   `sluicectl apply` refuses such objects, so only a direct etcd write gets here.
 * - Listing (paged) and watching is EtcdListWatch's (etcdListWatch.ts): a watch that fails,
 *   is cancelled (e.g. its revision was compacted) or loses its connection is replaced by
 *   a fresh list + watch, retried with exponential back-off. Until a list succeeds the last
 *   good snapshot stays in place: while etcd is unreachable the agent keeps enforcing what
 *   it last knew.
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
import type { Etcd3, IKeyValue } from "etcd3";
import type { Logger } from "pino";
import { parseWorkloadEndpointRecord } from "../config/endpointSchema.js";
import type { NamespaceObject, NetworkPolicyObject, PodObject } from "../config/k8sSchemas.js";
import { type KubeObject, type ResourceKind, KINDS, namespaceKind, networkPolicyKind, podKind } from "../config/resourceKinds.js";
import { NAMESPACE_NAME_LABEL, type NamespaceInfo, type PodEndpoint, type WorkloadEndpointRecord } from "../model/endpoint.js";
import { EndpointJoinMemo, joinEndpoints } from "../model/joinEndpoints.js";
import { EtcdListWatch } from "./etcdListWatch.js";
import { type KeyInfo, decodeStoredObjectOffThread, parseResourceKey } from "./etcdResources.js";
import { WorkerThread } from "../util/workerThread.js";
import { SLUICE_PREFIX } from "./resourceKeys.js";
import { type CacheEntry, type Validation, ValidatedObjectCache } from "./validatedObjectCache.js";

// The snapshot types live in src/model (policy/ reads them and may import no datastore).
export type { InvalidValue, PolicySnapshot, RefusedObject } from "../model/policySnapshot.js";
import type { InvalidValue, PolicySnapshot } from "../model/policySnapshot.js";

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
  /** A list request (one page of it) slower than this counts as failed. */
  requestTimeoutMs?: number;
  /** Keys per list request (see etcdListWatch.ts). */
  pageSize?: number;
}

/** Logged when a large object comes with exact copies in its ORed lists (NetworkPolicy rules, peers, ports). */
export const COPIES_IGNORED = "exact copies of rules, peers or ports in the object are ignored (they add nothing)";

type Entry = { type: "object"; kind: ResourceKind; object: KubeObject } | { type: "workloadendpoint"; record: WorkloadEndpointRecord };
/** undefined: a key of a kind this build does not know, left alone. */
type Decoded = CacheEntry<Entry> | undefined;

/**
 * Events: "changed" (PolicySourceChange) once per change that altered the snapshot,
 * "synced" once after the first complete list.
 */
export class PolicySource extends EventEmitter {
  private readonly log: Logger;
  readonly prefix: string;
  private readonly kinds: readonly ResourceKind[];
  private readonly watch: EtcdListWatch;
  private readonly cache: ValidatedObjectCache<Entry>;

  private revision = "0";
  private cached: PolicySnapshot | undefined;
  /** Unchanged records and Pods give the same endpoint objects from snapshot to snapshot (the render thread's delta finds them by identity). */
  private readonly joinMemo = new EndpointJoinMemo();
  private isSynced = false;
  private stopping = false;
  private starting: Promise<void> | undefined;
  /** Where large values are validated (started on the first one). */
  private readonly validator = new WorkerThread("sluice-validate");

  constructor(o: PolicySourceOptions) {
    super();
    this.log = o.log;
    this.prefix = (o.prefix ?? SLUICE_PREFIX).replace(/\/$/, "");
    this.kinds = o.kinds ?? KINDS;
    this.cache = new ValidatedObjectCache<Entry>(o.log, "value in etcd");
    this.watch = new EtcdListWatch({
      client: o.client,
      prefix: `${this.prefix}/`,
      log: o.log,
      name: "policy",
      what: "policy data",
      // The list and each event are handed over in etcd's order, each awaited: a later
      // event waits for an earlier one's validation in the worker thread.
      handlers: {
        list: async (kvs, revision) => this.applyList(await this.decodeAll(kvs), revision),
        put: async (kv) => this.applyPut(kv, await this.decode(kv)),
        delete: (kv) => this.applyDelete(kv),
      },
      ...(o.initialBackoffMs !== undefined ? { initialBackoffMs: o.initialBackoffMs } : {}),
      ...(o.maxBackoffMs !== undefined ? { maxBackoffMs: o.maxBackoffMs } : {}),
      ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
      ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}),
    });
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
    return this.watch.live;
  }

  /** How many times the source has listed (the first list included). */
  get listCount(): number {
    return this.watch.listCount;
  }

  /**
   * Lists and starts watching; resolves after the first successful list (retrying with
   * back-off while etcd is unreachable). Rejects only if stop() comes first.
   */
  start(): Promise<void> {
    this.starting ??= this.watch.start().catch(() => {
      throw new Error("policy source stopped before its first list");
    });
    return this.starting;
  }

  /** Stops watching. The snapshot stays readable. The etcd client is the caller's to close. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.watch.stop();
    await this.validator.close();
  }

  /** Stored values currently refused by validation. */
  invalidValues(): InvalidValue[] {
    return this.cache.invalidValues();
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
    const objects: Record<string, KubeObject[]> = {};
    for (const k of this.kinds) objects[k.kind] = [];
    const records: WorkloadEndpointRecord[] = [];
    for (const [, e] of this.cache.entries()) {
      if (e.type === "workloadendpoint") records.push(e.record);
      else (objects[e.kind.kind] ??= []).push(e.object);
    }
    const pods = (objects[podKind.kind] ?? []) as PodObject[];
    const networkPolicies = (objects[networkPolicyKind.kind] ?? []) as NetworkPolicyObject[];
    const { namespaces, endpoints } = namespacesAndEndpoints(this.kinds, objects, records, this.joinMemo);
    return {
      revision: this.revision,
      namespaces,
      endpoints,
      networkPolicies,
      pods,
      workloadEndpoints: records,
      objects,
      // buildPolicyModel decides what an unreadable object means: a fail-closed stand-in
      // for a policy of any kind, a warning for the rest.
      refused: this.cache.refused(),
    };
  }

  private async decode(kv: IKeyValue): Promise<Decoded> {
    const key = kv.key.toString();
    const info = parseResourceKey(key, this.prefix, this.kinds);
    if (info?.type === "other") return undefined; // not a kind this build knows (e.g. written by a newer sluicectl)
    // The object a key names, for refused(); a workload endpoint record names none.
    const id = info?.type === "object" ? { kind: info.kind.kind, namespace: info.namespace, name: info.name } : undefined;
    return { key, id, version: info ? await this.validate(key, info, kv) : { ok: false, reason: "key does not fit the layout" } };
  }

  private async validate(key: string, info: KeyInfo, kv: IKeyValue): Promise<Validation<Entry>> {
    if (info.type === "object") {
      let d: Awaited<ReturnType<typeof decodeStoredObjectOffThread>>;
      try {
        d = await decodeStoredObjectOffThread(this.validator, info.kind, info.namespace, info.name, kv);
      } catch (err) {
        // The thread failed (or took too long): the value counts as unreadable, never as absent.
        d = { ok: false, reason: `cannot be validated: ${(err as Error).message}` };
      }
      if (!d.ok) return d;
      if (d.copies) this.log.warn({ key, copies: d.copies }, COPIES_IGNORED);
      return { ok: true, value: { type: "object", kind: info.kind, object: d.object }, dropped: d.dropped.map((i) => `${i.path}: ${i.message}`).join("; ") };
    }
    if (info.type !== "workloadendpoint") return { ok: false, reason: "key does not fit the layout" };
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
    return { ok: true, value: { type: "workloadendpoint", record: rec } };
  }

  private async decodeAll(kvs: readonly IKeyValue[]): Promise<Decoded[]> {
    const out: Decoded[] = [];
    for (const kv of kvs) out.push(await this.decode(kv));
    return out;
  }

  private kindOf(e: Entry | undefined): string | undefined {
    return e === undefined ? undefined : e.type === "object" ? e.kind.kind : "WorkloadEndpoint";
  }

  private applyPut(kv: IKeyValue, d: Decoded): void {
    if (d === undefined || this.stopping) return;
    this.revision = kv.mod_revision;
    if (!this.cache.put(d.key, d.id, d.version)) return;
    this.changed({ cause: "put", key: d.key, ...(d.version.ok ? { kind: this.kindOf(d.version.value) } : {}), revision: this.revision });
  }

  private applyDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    const old = this.cache.get(key);
    if (kv.mod_revision) this.revision = kv.mod_revision;
    if (!this.cache.delete(key)) return;
    this.changed({ cause: "delete", key, ...(old !== undefined ? { kind: this.kindOf(old) } : {}), revision: this.revision });
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
  private applyList(decoded: readonly Decoded[], revision: string): void {
    if (this.stopping) return;
    this.cache.replaceAll(decoded.filter((d): d is CacheEntry<Entry> => d !== undefined));
    this.revision = revision;
    const first = !this.isSynced;
    this.isSynced = true;
    this.log.info({ revision, keys: this.cache.size, invalid: this.cache.invalidValues().length }, first ? "policy data listed" : "policy data relisted");
    this.changed({ cause: "list", revision });
    if (first) {
      try {
        this.emit("synced");
      } catch (err) {
        this.log.error({ err: (err as Error).message }, "a policy source listener failed");
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
export function namespacesAndEndpoints(kinds: readonly ResourceKind[], objects: Readonly<Record<string, readonly KubeObject[]>>, records: readonly WorkloadEndpointRecord[], memo?: EndpointJoinMemo): { namespaces: NamespaceInfo[]; endpoints: PodEndpoint[] } {
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
  const endpoints = joinEndpoints(records, pods, { memo, namespaceKnown: (ns) => declared.has(ns) });
  return { namespaces: [...namespaces.values()].sort((a, b) => cmp(a.name, b.name)), endpoints };
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
