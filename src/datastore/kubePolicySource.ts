/**
 * The policy engine's view of a Kubernetes cluster (the PolicyFeed of Kubernetes mode):
 * one informer per registry kind (Namespaces, Pods, NetworkPolicies and every kind later
 * appended to KINDS, generically by group/version/plural), producing the same
 * PolicySnapshot as the etcd PolicySource, so nothing downstream knows which is in use.
 *
 * - Every object is validated with its kind's zod schema (validateObject). An invalid one
 *   keeps its last good version if it had one; otherwise it is listed in `refused` and left
 *   out of `objects` (buildPolicyModel stands a fail-closed deny-all in for a policy): the
 *   ValidatedObjectCache's rules (validatedObjectCache.ts), the etcd source's too. A
 *   Pod's or Node's address no host may have (0.0.0.0, ::, loopback, multicast) is dropped
 *   from the object with a warning naming it; the object and its other addresses stay.
 * - Pods are endpoints with their IPs from status.podIPs/podIP, node from spec.nodeName and
 *   the host veth hostIfaceName(namespace, pod). hostNetwork pods, pods that ended
 *   (Succeeded/Failed) and pods without an IP are not endpoints. `localRecords` (what the
 *   CNI plugin recorded on this node) supply a local pod's IPs before the kubelet reports
 *   them: for this node's pods the record wins. A record without its Pod is still an
 *   endpoint, with unknown labels (fail closed), as in etcd mode.
 * - A large object (hasMoreValues: a policy may take 1.5 MiB) is validated in a worker
 *   thread (offThreadValidation.ts), so the event loop stays free meanwhile; lists and
 *   events still apply one at a time, in the order the watches delivered them.
 * - A namespace without its Namespace object gives its endpoints unknown labels (as etcd).
 * - `synced` once every informer has listed; "changed" on each change; 410 Gone relists
 *   (the informer does), other failures are retried with back-off; the last snapshot stays
 *   through an outage and through a 404 (a CRD counts as empty only when discovery says the
 *   server does not serve it: kubeWatch.ts); `live` while every watch is connected. Nothing here throws into the
 *   process: watch errors and listener bugs are logged.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import type { NetworkPolicyObject, PodObject } from "../config/k8sSchemas.js";
import { type KubeObject, type ResourceKind, type Validated, KINDS, networkPolicyKind, podKind, validateObject } from "../config/resourceKinds.js";
import { hasMoreValues, validateTextOffThread } from "../config/offThreadValidation.js";
import { WorkerThread } from "../util/workerThread.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../model/endpoint.js";
import { KubeCollectionWatch, type RawKubeObject } from "./kubeWatch.js";
import { COPIES_IGNORED, type InvalidValue, type PolicySnapshot, type RefusedObject, namespacesAndEndpoints } from "./policySource.js";
import { type CacheEntry, ValidatedObjectCache } from "./validatedObjectCache.js";

/** What the CNI plugin recorded for this node's pods (k-agent reads them from its files). */
export interface LocalEndpointRecords {
  records(): WorkloadEndpointRecord[];
  on(event: "changed", listener: () => void): unknown;
}

export interface KubePolicySourceOptions {
  /** From kubeConfigFrom(). */
  kc: KubeConfig;
  log: Logger;
  /** This node: local records stand for its pods. */
  nodeName: string;
  /** Default KINDS. */
  kinds?: readonly ResourceKind[];
  localRecords?: LocalEndpointRecords;
  /** Restart back-off of a failed informer; defaults 500 / 10 000 ms. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A list slower than this counts as failed. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** See KubeCollectionWatch. */
  watchTimeoutSeconds?: number;
}

export interface KubePolicySourceChange {
  cause: "list" | "put" | "delete" | "records";
  /** "Pod", "NetworkPolicy", ... */
  kind?: string;
  /** namespace/name (or name). */
  key?: string;
  revision: string;
}

interface KindState {
  kind: ResourceKind;
  /** By "namespace/name" (or name): last good versions and refusals, as the etcd source keeps them. */
  cache: ValidatedObjectCache<KubeObject>;
  watch: KubeCollectionWatch;
  /** Its first list has been applied (the watch may have listed before: lists wait their turn). */
  listed: boolean;
}

interface KubePolicySourceEvents {
  /** Once per change that altered the snapshot (coalescing is the caller's job). */
  changed: [change: KubePolicySourceChange];
  /** Once, after every kind has been listed. */
  synced: [];
}

export class KubePolicySource extends EventEmitter<KubePolicySourceEvents> {
  private readonly o: KubePolicySourceOptions;
  private readonly kinds: readonly ResourceKind[];
  private readonly states: KindState[];
  private revision = "0";
  private cached: PolicySnapshot | undefined;
  private isSynced = false;
  private starting: Promise<void> | undefined;
  private stopping = false;
  /** Where large objects are validated (started on the first one). */
  private readonly validator = new WorkerThread("sluice-validate");
  /** Lists and events apply one after another, in order, even while one awaits its validation. */
  private applying: Promise<void> = Promise.resolve();

  constructor(o: KubePolicySourceOptions) {
    super();
    this.o = o;
    this.kinds = o.kinds ?? KINDS;
    this.states = this.kinds.map((kind) => {
      const state: KindState = {
        kind,
        cache: new ValidatedObjectCache<KubeObject>(o.log, "object"),
        listed: false,
        watch: new KubeCollectionWatch({
          kc: o.kc,
          log: o.log,
          resource: kind,
          handlers: {
            list: (items, rv) => this.inOrder(async () => this.onList(state, await this.decodeAll(state, items), rv)),
            upsert: (obj) => this.inOrder(async () => this.onUpsert(state, obj, await this.decode(state, obj))),
            remove: (obj) => this.inOrder(() => this.onRemove(state, obj)),
          },
          // A CRD that is not installed holds nothing; it must not hold back the rest. Built-in
          // kinds are always served: a 404 there is never an empty list.
          absenceByDiscovery: kind.group !== "" && kind.group !== "networking.k8s.io",
          ...(o.initialBackoffMs !== undefined ? { initialBackoffMs: o.initialBackoffMs } : {}),
          ...(o.maxBackoffMs !== undefined ? { maxBackoffMs: o.maxBackoffMs } : {}),
          ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
          ...(o.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: o.watchTimeoutSeconds } : {}),
        }),
      };
      return state;
    });
    o.localRecords?.on("changed", () => this.changed({ cause: "records", revision: this.revision }));
  }

  /** True once every kind has been listed (stays true through outages: the snapshot is the last one). */
  get synced(): boolean {
    return this.isSynced;
  }

  /** True while every watch is connected: false during an API outage (for readiness). */
  get live(): boolean {
    return this.states.every((s) => s.watch.live);
  }

  /** Lists of every kind so far (first lists included; relists after 410 add to it). */
  get listCount(): number {
    return this.states.reduce((n, s) => n + s.watch.listCount, 0);
  }

  /** Starts every informer; resolves once all have listed (retrying meanwhile), rejects if stopped first. */
  start(): Promise<void> {
    // Once listed, a list has been queued: wait until it is applied too.
    this.starting ??= Promise.all(this.states.map((s) => s.watch.start())).then(() => this.applying);
    return this.starting;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.states.map((s) => s.watch.stop()));
    await this.validator.close();
  }

  /** Runs `step` after every step queued before it; nothing is applied once stopping. */
  private inOrder(step: () => void | Promise<void>): void {
    this.applying = this.applying
      .then(() => (this.stopping ? undefined : step()))
      .catch((err: Error) => {
        // A listener's bug or a failed step must not stop the ones after it.
        this.o.log.error({ err: (err as Error).message }, "applying a policy data change failed");
      });
  }

  snapshot(): PolicySnapshot {
    this.cached ??= this.build();
    return this.cached;
  }

  /** The objects of one registered kind, typed. */
  objectsOf<T extends KubeObject>(kind: ResourceKind<T>): T[] {
    return [...(this.snapshot().objects[kind.kind] ?? [])] as T[];
  }

  /** Objects currently refused by validation (key "Kind namespace/name"). */
  invalidValues(): InvalidValue[] {
    return this.states.flatMap((s) => s.cache.invalidValues().map((v) => ({ ...v, key: `${s.kind.kind} ${v.key}` })));
  }

  // ------------------------------------------------------------------ events

  private async decode(state: KindState, raw: RawKubeObject): Promise<CacheEntry<KubeObject> | undefined> {
    const k = keyOf(state, raw);
    if (!k) return undefined;
    let v: Validated<KubeObject>;
    try {
      v = await this.validate(state.kind, raw);
    } catch (err) {
      // The thread failed (or took too long): the object counts as unreadable, never as absent.
      v = { ok: false, issues: [{ path: "(root)", message: `cannot be validated: ${(err as Error).message}` }] };
    }
    const id = { kind: state.kind.kind, namespace: k.namespace, name: k.name };
    if (v.ok) return { key: k.key, id, version: { ok: true, value: v.object, dropped: v.dropped.map((i) => `${i.path}: ${i.message}`).join("; ") } };
    return { key: k.key, id, version: { ok: false, reason: v.issues.map((i) => `${i.path}: ${i.message}`).join("; ") } };
  }

  private async decodeAll(state: KindState, items: readonly RawKubeObject[]): Promise<Array<CacheEntry<KubeObject> | undefined>> {
    const out: Array<CacheEntry<KubeObject> | undefined> = [];
    for (const raw of items) out.push(await this.decode(state, raw));
    return out;
  }

  /** validateObject, in the worker thread for a large object. */
  private async validate(kind: ResourceKind, raw: RawKubeObject): Promise<Validated<KubeObject>> {
    if (!hasMoreValues(raw)) return validateObject(kind, raw);
    const v = await validateTextOffThread(this.validator, kind, JSON.stringify(raw));
    if (v.ok && v.copies) this.o.log.warn({ kind: kind.kind, key: kind.namespaced ? `${raw.metadata?.namespace ?? "default"}/${raw.metadata?.name ?? ""}` : raw.metadata?.name, copies: v.copies }, COPIES_IGNORED);
    // It came from the API server's JSON, so it is JSON.
    return "notJson" in v ? { ok: false, issues: [{ path: "(root)", message: `not JSON: ${v.notJson}` }] } : v;
  }

  private onList(state: KindState, decoded: ReadonlyArray<CacheEntry<KubeObject> | undefined>, rv: string): void {
    state.cache.replaceAll(decoded.filter((d): d is CacheEntry<KubeObject> => d !== undefined));
    state.listed = true;
    if (rv) this.revision = rv;
    this.changed({ cause: "list", kind: state.kind.kind, revision: this.revision });
    if (!this.isSynced && this.states.every((s) => s.listed)) {
      this.isSynced = true;
      try {
        this.emit("synced");
      } catch (err) {
        this.o.log.error({ err: (err as Error).message }, "a policy source listener failed");
      }
    }
  }

  private onUpsert(state: KindState, raw: RawKubeObject, d: CacheEntry<KubeObject> | undefined): void {
    if (!d) return;
    // An invalid version over a good one changes nothing the snapshot shows.
    const visible = state.cache.put(d.key, d.id, d.version);
    this.noteRevision(raw);
    if (visible) this.changed({ cause: "put", kind: state.kind.kind, key: d.key, revision: this.revision });
  }

  private onRemove(state: KindState, raw: RawKubeObject): void {
    const d = keyOf(state, raw);
    if (!d || !state.cache.delete(d.key)) return;
    this.noteRevision(raw);
    this.changed({ cause: "delete", kind: state.kind.kind, key: d.key, revision: this.revision });
  }

  private noteRevision(raw: RawKubeObject): void {
    const rv = raw.metadata?.resourceVersion;
    if (rv) this.revision = rv;
  }

  private changed(c: KubePolicySourceChange): void {
    this.cached = undefined;
    try {
      this.emit("changed", c);
    } catch (err) {
      // A listener's bug must not take the watch down with it.
      this.o.log.error({ err: (err as Error).message }, "a policy source listener failed");
    }
  }

  // ------------------------------------------------------------------ snapshot

  private build(): PolicySnapshot {
    const objects: Record<string, KubeObject[]> = {};
    const refused: RefusedObject[] = [];
    for (const s of this.states) {
      objects[s.kind.kind] = s.cache.entries().map(([, o]) => o);
      refused.push(...s.cache.refused());
    }
    const pods = (objects[podKind.kind] ?? []) as PodObject[];
    const { namespaces, endpoints } = namespacesAndEndpoints(this.kinds, objects, this.endpointRecords(pods));
    return {
      revision: this.revision,
      namespaces,
      endpoints,
      networkPolicies: (objects[networkPolicyKind.kind] ?? []) as NetworkPolicyObject[],
      pods,
      // What the CNI plugin recorded (as in etcd mode); the Pods' own addresses are in `endpoints`.
      workloadEndpoints: (this.o.localRecords?.records() ?? []).filter((r) => r.node === this.o.nodeName),
      objects,
      refused,
    };
  }

  /**
   * One record per pod interface, for joinEndpoints: this node's CNI records, else what the
   * Pod's status says (containerId is not known then and left empty).
   */
  private endpointRecords(pods: readonly PodObject[]): WorkloadEndpointRecord[] {
    const node = this.o.nodeName;
    const local = new Map<string, WorkloadEndpointRecord[]>();
    for (const r of this.o.localRecords?.records() ?? []) {
      if (r.node !== node) continue;
      const k = `${r.namespace}/${r.pod}`;
      local.set(k, [...(local.get(k) ?? []), r]);
    }
    const out: WorkloadEndpointRecord[] = [];
    for (const p of pods) {
      const ns = p.metadata.namespace;
      const k = `${ns}/${p.metadata.name}`;
      const recs = local.get(k);
      local.delete(k);
      if (p.spec.hostNetwork === true) continue;
      if (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") continue;
      if (recs && (p.spec.nodeName === undefined || p.spec.nodeName === node)) {
        out.push(...recs);
        continue;
      }
      const ips = podIps(p);
      if (!p.spec.nodeName || ips.length === 0) continue;
      out.push({ node: p.spec.nodeName, namespace: ns, pod: p.metadata.name, containerId: "", ifName: "eth0", hostIface: hostIfaceName(ns, p.metadata.name), ips });
    }
    // Records of pods the API has not shown us (yet, or any more): endpoints with unknown labels.
    for (const recs of local.values()) out.push(...recs);
    return out;
  }
}

/** The cache key of an object, "namespace/name" or name (a delete needs no more: its last version is not validated). */
function keyOf(state: KindState, raw: RawKubeObject): { key: string; namespace: string | undefined; name: string } | undefined {
  const name = raw.metadata?.name;
  if (!name) return undefined;
  const namespace = state.kind.namespaced ? (raw.metadata?.namespace ?? "default") : undefined;
  return { key: namespace !== undefined ? `${namespace}/${name}` : name, namespace, name };
}

/** A Pod's addresses: status.podIPs, else status.podIP. */
export function podIps(p: PodObject): string[] {
  const list = (p.status?.podIPs ?? []).map((x) => x.ip).filter(Boolean);
  if (list.length) return list;
  return p.status?.podIP ? [p.status.podIP] : [];
}
