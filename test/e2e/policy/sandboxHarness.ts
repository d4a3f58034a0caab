/**
 * PolicyHarness on the real thing: a sandbox cluster (nodes in network namespaces, real
 * agents), pods wired by sluice-cni with the sandbox pod server, policy objects written to
 * the sandbox's datastore (a PolicyObjectStore: the etcd resource store exactly as
 * `sluicectl apply` writes it, or a Kubernetes API server), probes made from inside the
 * pods (src/sandbox/probe.ts) and from the nodes' namespaces, a host-network server on
 * every node (the pods' ports, in the node's own namespace), an external host on the
 * underlay, and `sluicectl explain`'s library where the store can load the policy model.
 */
import type { Etcd3 } from "etcd3";
import { ConfigError } from "../../../src/config/errors.js";
import { KINDS, type KubeObject, type ResourceKind } from "../../../src/config/resourceKinds.js";
import { Explainer, loadPolicyModel } from "../../../src/ctl/explain.js";
import { formatProblem, parseManifests } from "../../../src/ctl/manifests.js";
import { type EtcdConnection, connectEtcd } from "../../../src/datastore/etcdClient.js";
import { EtcdResourceStore } from "../../../src/datastore/etcdResources.js";
import type { PolicyModel } from "../../../src/policy/model.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { addExternalHost, listExternalHosts } from "../../../src/sandbox/external.js";
import { nodePolicyStatus, nodeSubnet, serveOnNode } from "../../../src/sandbox/nodes.js";
import { createNamespace, createPod, deleteNamespace, deletePod, getNamespace, getPodObject, labelNamespace, labelPod, listPods } from "../../../src/sandbox/pods.js";
import { probeEach, probeFromNode } from "../../../src/sandbox/probe.js";
import type { ExplainRequest, NodeProbeRequest, PodRequest, PolicyHarness, ProbeRequest } from "./harness.js";
import { CONTAINER_PORTS } from "./model.js";
import type { ObjectRef } from "./state.js";

export function kindOf(name: string): ResourceKind {
  const k = KINDS.find((x) => x.kind === name);
  if (!k) throw new Error(`no kind ${name} in the registry (have ${KINDS.map((x) => x.kind).join(", ")})`);
  return k;
}

/** Kinds that live in a namespace and go with it (everything but the pods, which deletePod removes). */
export const namespacedObjectKinds = (): ResourceKind[] => KINDS.filter((k) => k.namespaced && k.kind !== "Pod");

/** Where the harness writes policy objects; the sandbox's own Namespaces and Pods go through its SandboxObjects. */
export interface PolicyObjectStore {
  /** Create or replace every object (validated already). */
  apply(objects: readonly KubeObject[]): Promise<void>;
  delete(ref: ObjectRef): Promise<void>;
  /** Deletes every object of a namespaced kind (pods aside) in the namespace. */
  deleteNamespaced(namespace: string): Promise<void>;
  /** The policy model as the agents see it, for explain; absent when the test process cannot read the datastore. */
  loadModel?(): Promise<PolicyModel>;
  /**
   * Writes a marker that every agent watches and resolves with its revision: once an
   * agent's policy status reaches it, every earlier write is in force there. Absent where
   * revisions do not order writes across kinds.
   */
  barrier?(): Promise<bigint>;
  close(): Promise<void>;
}

/** The barrier's namespace (EtcdPolicyObjectStore.barrier): never holds a pod. */
export const SYNC_NAMESPACE = "e2e-sync";
const SYNC_LABEL = "e2e.sluice.dev/barrier";

/** The sandbox's etcd, written through the resource store `sluicectl apply` uses. */
export class EtcdPolicyObjectStore implements PolicyObjectStore {
  private readonly etcd: Etcd3;
  private readonly store: EtcdResourceStore;

  constructor(
    private readonly connection: EtcdConnection,
    private readonly endpoint = connection.endpoints.join(","),
  ) {
    this.etcd = connectEtcd(connection);
    this.store = new EtcdResourceStore(this.etcd);
  }

  async apply(objects: readonly KubeObject[]): Promise<void> {
    await this.store.applyAll([...objects]);
  }

  async delete(ref: ObjectRef): Promise<void> {
    await this.store.delete({ kind: kindOf(ref.kind), namespace: ref.namespace, name: ref.name });
  }

  async deleteNamespaced(namespace: string): Promise<void> {
    for (const kind of namespacedObjectKinds()) {
      const { items } = await this.store.list(kind, namespace);
      await this.store.deleteAll(items.map((o) => ({ kind, namespace, name: o.metadata.name })));
    }
  }

  /**
   * With a client of its own, as `sluicectl explain` has: etcd3 may reset a client's
   * channels when the explain's watch is cancelled, failing the writes of the next step
   * that share them.
   */
  async loadModel(): Promise<PolicyModel> {
    const client = connectEtcd(this.connection);
    try {
      return (await loadPolicyModel(client, { endpoint: this.endpoint })).model;
    } finally {
      client.close();
    }
  }

  private barriers = 0;

  /**
   * The marker is a Namespace with no pods, whose label changes at every barrier: a
   * change every agent's policy source takes (one etcd watch over the whole prefix, in
   * revision order), and renders to nothing.
   */
  async barrier(): Promise<bigint> {
    const [r] = await this.store.applyAll([{ apiVersion: "v1", kind: "Namespace", metadata: { name: SYNC_NAMESPACE, labels: { [SYNC_LABEL]: String(++this.barriers) } } }]);
    const rv = r?.object.metadata.resourceVersion;
    if (rv === undefined) throw new Error("the barrier's write reported no revision");
    return BigInt(rv);
  }

  async close(): Promise<void> {
    this.etcd.close();
  }
}

export class SandboxPolicyHarness implements PolicyHarness {
  /** Only when the store can load the model (the runner then compares explain with the probes). */
  readonly explain?: (q: ExplainRequest) => Promise<{ cells: boolean[][]; pairs: boolean[] }>;
  /** Only when the store can write a barrier. */
  readonly inForce?: (deadlineMs: number) => Promise<{ ms: number; late: string[] }>;

  constructor(
    private readonly sb: Sandbox,
    private readonly objects: PolicyObjectStore = new EtcdPolicyObjectStore(sb.etcdConnection()),
  ) {
    const load = objects.loadModel?.bind(objects);
    if (load) this.explain = async (q) => explainFrom(await load(), q);
    const barrier = objects.barrier?.bind(objects);
    if (barrier) this.inForce = async (deadlineMs) => inForceOnEveryNode(sb, await barrier(), deadlineMs);
  }

  get nodes(): string[] {
    return this.sb.nodes.map((n) => n.name);
  }

  network(): string {
    return this.sb.o.network ?? "10.244.0.0/16";
  }

  async nodeSubnet(node: string): Promise<string> {
    const s = await nodeSubnet(this.sb.nodeByName(node));
    if (s === "-") throw new Error(`${node} has no subnet yet`);
    return s;
  }

  async createNamespace(name: string, labels: Record<string, string>): Promise<void> {
    await createNamespace(this.sb, name, labels);
  }

  async deleteNamespace(name: string): Promise<void> {
    for (const p of listPods(this.sb).filter((x) => x.namespace === name)) await deletePod(this.sb, p);
    await this.objects.deleteNamespaced(name);
    await deleteNamespace(this.sb, name);
  }

  async createPod(p: PodRequest): Promise<string> {
    const pod = await createPod(this.sb, { namespace: p.namespace, name: p.name, node: p.node, labels: p.labels, ports: p.ports });
    const ip = pod.ips.find((a) => !a.includes(":"));
    if (!ip) throw new Error(`pod ${p.namespace}/${p.name} got no IPv4 address (${pod.ips.join(", ")})`);
    return ip;
  }

  async deletePod(namespace: string, name: string): Promise<void> {
    await deletePod(this.sb, { namespace, name });
  }

  async setPodLabels(namespace: string, name: string, labels: Record<string, string>): Promise<void> {
    const cur = (await getPodObject(this.sb, { namespace, name }))?.metadata.labels ?? {};
    await labelPod(this.sb, { namespace, name }, { set: labels, remove: Object.keys(cur).filter((k) => !(k in labels)) });
  }

  async setNamespaceLabels(name: string, labels: Record<string, string>): Promise<void> {
    const cur = (await getNamespace(this.sb, name))?.metadata.labels ?? {};
    await labelNamespace(this.sb, name, { set: labels, remove: Object.keys(cur).filter((k) => !(k in labels)) });
  }

  async applyPolicyYaml(text: string): Promise<void> {
    const parsed = parseManifests([{ name: "scenario", text }], { validate: true });
    if (parsed.problems.length) throw new ConfigError("-f", parsed.problems.map(formatProblem).join("\n"), "sluicectl apply");
    await this.objects.apply(parsed.objects.map((o) => o.object));
  }

  async deleteObject(ref: ObjectRef): Promise<void> {
    await this.objects.delete(ref);
  }

  async hostAddresses(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const n of this.sb.nodes) {
      await serveOnNode(this.sb, n.name, CONTAINER_PORTS.map((p) => ({ port: p.containerPort, protocol: p.protocol })));
      out[n.name] = n.address;
    }
    const ext = listExternalHosts(this.sb)[0] ?? (await addExternalHost(this.sb));
    out[ext.name] = ext.address;
    return out;
  }

  /** One request per source pod (and port): a 9x9 matrix is 9 requests, all at once. */
  async probe(requests: readonly ProbeRequest[], timeoutMs: number): Promise<boolean[]> {
    const groups = new Map<string, number[]>();
    requests.forEach((r, i) => {
      const key = `${r.from} ${r.port}/${r.protocol}`;
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    const out: boolean[] = new Array<boolean>(requests.length).fill(false);
    await Promise.all(
      [...groups.values()].map(async (idx) => {
        const first = requests[idx[0] as number] as ProbeRequest;
        const results = await probeEach(this.sb, first.from, idx.map((i) => (requests[i] as ProbeRequest).toIp), { port: first.port, protocol: first.protocol, timeoutMs });
        idx.forEach((i, k) => (out[i] = results[k]?.connected ?? false));
      }),
    );
    return out;
  }

  async probeFromNode(requests: readonly NodeProbeRequest[], timeoutMs: number): Promise<boolean[]> {
    return Promise.all(requests.map(async (r) => ((await probeFromNode(this.sb, r.node, [r.toIp], { port: r.port, protocol: r.protocol, timeoutMs }))[0]?.connected ?? false)));
  }

  async close(): Promise<void> {
    await this.objects.close();
  }
}

/** Polls every node's policy status (a file read each, every 10 ms) until all are at `revision` or past it. */
async function inForceOnEveryNode(sb: Sandbox, revision: bigint, deadlineMs: number): Promise<{ ms: number; late: string[] }> {
  const started = Date.now();
  const late = (): string[] =>
    sb.nodes.filter((n) => {
      const st = nodePolicyStatus(n);
      return st === undefined || BigInt(st.revision) < revision;
    }).map((n) => `${n.name} (at ${nodePolicyStatus(n)?.revision ?? "none"}, barrier ${revision})`);
  for (;;) {
    const behind = late();
    const ms = Date.now() - started;
    if (behind.length === 0 || ms >= deadlineMs) return { ms, late: behind };
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What explain says for the matrix over `q.pods` and each pair, from one policy model. */
function explainFrom(model: PolicyModel, q: ExplainRequest): { cells: boolean[][]; pairs: boolean[] } {
  const ex = new Explainer(model, { sctpSupported: false });
  const spec = { port: q.port, protocol: q.protocol };
  const m = ex.matrix(spec, { pods: q.pods });
  const cells = q.pods.map((f) =>
    q.pods.map((t) => {
      const c = m.reachability[f]?.[t];
      if (c === undefined) throw new Error(`explain's matrix has no cell ${f} -> ${t} (its pods: ${m.pods.join(" ")})`);
      return c;
    }),
  );
  const pairs = q.pairs.map((p) => ex.explain(ex.resolve(p.from, 4, "FROM"), ex.resolve(p.toIp, 4, "TO"), spec).allowed);
  return { cells, pairs };
}
