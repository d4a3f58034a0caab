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
  const byName = new Map<string, PodMeta>();
  for (const p of pods) byName.set(`${p.metadata.namespace ?? "default"}/${p.metadata.name}`, p);
  const rows = records.map((r) => {
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
    const endpoint = opts.memo ? opts.memo.endpoint(r, pod, known, make) : make();
    return { endpoint, ifName: r.ifName };
  });
  rows.sort((a, b) => cmp(a.endpoint.namespace, b.endpoint.namespace) || cmp(a.endpoint.pod, b.endpoint.pod) || cmp(a.endpoint.node, b.endpoint.node) || cmp(a.ifName, b.ifName));
  return rows.map((r) => r.endpoint);
}

export function containerPorts(pod: PodMeta): ContainerPort[] {
  const out: ContainerPort[] = [];
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) out.push({ ...(p.name !== undefined ? { name: p.name } : {}), containerPort: p.containerPort, protocol: p.protocol ?? "TCP" });
  }
  return out;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
