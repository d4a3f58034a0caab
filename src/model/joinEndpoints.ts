/**
 * Joins what the CNI plugin recorded (addresses, node, host interface) with what the
 * orchestrator says about the pod (labels, container ports) into the endpoints the policy
 * engine works on. Pure.
 *
 * - One PodEndpoint per record (a pod with two recorded interfaces yields two).
 * - A record without a Pod object gets no labels and no ports and `metadataKnown: false`:
 *   it is still an endpoint, and the policy engine isolates it both ways and matches it
 *   with no selector until its labels are known (fail closed).
 * - A Pod without a record has no addresses here and is not an endpoint.
 * - Ports are every container's ports, in declaration order; named ports keep their name.
 * - Output is sorted by namespace, pod, node, interface, so equal inputs give equal outputs.
 */
import type { ContainerPort, PodEndpoint, WorkloadEndpointRecord } from "./endpoint.js";

/** The parts of a Pod object the join reads (k8sSchemas' PodObject satisfies it). */
export interface PodMeta {
  metadata: { name: string; namespace?: string | undefined; labels?: Record<string, string> | undefined };
  spec?: { containers?: ReadonlyArray<{ ports?: ReadonlyArray<{ name?: string | undefined; containerPort: number; protocol?: ContainerPort["protocol"] | undefined }> | undefined }> | undefined } | undefined;
}

/**
 * The endpoint of each (record, pod) pair as last joined, by object identity: a datastore
 * that keeps unchanged records and Pod objects from one snapshot to the next gets the same
 * endpoint objects back, so everything downstream that memoizes by identity (the render
 * exchange's fingerprints, the render memo) does not look at them again.
 */
export class EndpointJoinMemo {
  private readonly byRecord = new WeakMap<WorkloadEndpointRecord, { pod: PodMeta | undefined; known: boolean; endpoint: PodEndpoint }>();
  private lastRecords: readonly WorkloadEndpointRecord[] = [];
  private lastOrder: readonly number[] = [];

  private lastPods: readonly PodMeta[] = [];
  private byName = new Map<string, PodMeta>();

  /**
   * The pods by namespace/name, updated in place while the list keeps its length and each
   * replaced pod its name (a label change), else built anew.
   */
  podsByName(pods: readonly PodMeta[], build: () => Map<string, PodMeta>): ReadonlyMap<string, PodMeta> {
    const last = this.lastPods;
    let inPlace = pods.length === last.length && this.byName.size === pods.length; // (a name twice: the last one wins, so build)
    const replaced: Array<[string, PodMeta]> = [];
    for (let i = 0; inPlace && i < pods.length; i++) {
      const p = pods[i] as PodMeta;
      const before = last[i] as PodMeta;
      if (p === before) continue;
      const name = podName(p);
      if (name === podName(before)) replaced.push([name, p]);
      else inPlace = false;
    }
    if (inPlace) for (const [name, p] of replaced) this.byName.set(name, p);
    else this.byName = build();
    this.lastPods = pods;
    return this.byName;
  }

  /**
   * The sorted order of `records` (indices), kept while the records are the same objects
   * in the same order: the order is a function of the records alone, and a label change
   * (the commonest event) changes a Pod, not a record, so it sorts nothing.
   */
  order(records: readonly WorkloadEndpointRecord[], sort: () => number[]): readonly number[] {
    const last = this.lastRecords;
    if (records.length !== last.length || records.some((r, i) => r !== last[i])) {
      this.lastOrder = sort();
      this.lastRecords = records;
    }
    return this.lastOrder;
  }

  endpoint(r: WorkloadEndpointRecord, pod: PodMeta | undefined, known: boolean, make: () => PodEndpoint): PodEndpoint {
    const hit = this.byRecord.get(r);
    if (hit && hit.pod === pod && hit.known === known) return hit.endpoint;
    const endpoint = make();
    this.byRecord.set(r, { pod, known, endpoint });
    return endpoint;
  }
}

/**
 * `namespaceKnown`: false for a namespace whose Namespace object is missing: its pods'
 * namespace labels are unknown, so like a pod without its Pod object they match no
 * selector and are isolated (metadataKnown false).
 */
export function joinEndpoints(records: readonly WorkloadEndpointRecord[], pods: readonly PodMeta[], opts: { memo?: EndpointJoinMemo | undefined; namespaceKnown?: ((namespace: string) => boolean) | undefined } = {}): PodEndpoint[] {
  const build = (): Map<string, PodMeta> => {
    const m = new Map<string, PodMeta>();
    for (const p of pods) m.set(podName(p), p);
    return m;
  };
  const byName = opts.memo ? opts.memo.podsByName(pods, build) : build();
  const endpointOf = (r: WorkloadEndpointRecord): PodEndpoint => {
    const pod = byName.get(`${r.namespace}/${r.pod}`);
    const known = pod !== undefined && (opts.namespaceKnown?.(r.namespace) ?? true);
    const make = (): PodEndpoint => ({
      namespace: r.namespace,
      pod: r.pod,
      node: r.node,
      hostIface: r.hostIface,
      ips: [...r.ips],
      labels: pod ? { ...(pod.metadata.labels ?? {}) } : {},
      ports: pod ? containerPorts(pod) : [],
      ...(known ? {} : { metadataKnown: false }),
    });
    return opts.memo ? opts.memo.endpoint(r, pod, known, make) : make();
  };
  // An endpoint's namespace, pod and node are its record's, so the order is the records'.
  const sort = (): number[] =>
    records.map((_, i) => i).sort((i, j) => {
      const a = records[i] as WorkloadEndpointRecord;
      const b = records[j] as WorkloadEndpointRecord;
      return cmp(a.namespace, b.namespace) || cmp(a.pod, b.pod) || cmp(a.node, b.node) || cmp(a.ifName, b.ifName);
    });
  const order = opts.memo ? opts.memo.order(records, sort) : sort();
  return order.map((i) => endpointOf(records[i] as WorkloadEndpointRecord));
}

export function containerPorts(pod: PodMeta): ContainerPort[] {
  const out: ContainerPort[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) out.push({ ...(p.name !== undefined ? { name: p.name } : {}), containerPort: p.containerPort, protocol: p.protocol ?? "TCP" });
  }
  return out;
}

const podName = (p: PodMeta): string => `${p.metadata.namespace ?? "default"}/${p.metadata.name}`;
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
