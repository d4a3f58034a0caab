/**
 * PolicyHarness on the real thing: a sandbox cluster (nodes in network namespaces, real
 * agents, real etcd), pods wired by sluice-cni with the sandbox pod server, objects
 * written through the etcd resource store exactly as `sluicectl apply` writes them,
 * probes made from inside the pods (src/sandbox/probe.ts) and from the nodes' namespaces.
 */
import { Etcd3 } from "etcd3";
import { ConfigError } from "../../../src/config/errors.js";
import { networkPolicyKind } from "../../../src/config/resourceKinds.js";
import { formatProblem, parseManifests } from "../../../src/ctl/manifests.js";
import { EtcdResourceStore } from "../../../src/datastore/etcdResources.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { nodeSubnet } from "../../../src/sandbox/nodes.js";
import { createNamespace, createPod, deleteNamespace, deletePod, getNamespace, getPodObject, labelNamespace, labelPod, listPods } from "../../../src/sandbox/pods.js";
import { probe, probeFromNode } from "../../../src/sandbox/probe.js";
import type { NodeProbeRequest, PodRequest, PolicyHarness, ProbeRequest } from "./harness.js";

export class SandboxPolicyHarness implements PolicyHarness {
  private readonly etcd: Etcd3;
  private readonly store: EtcdResourceStore;

  constructor(private readonly sb: Sandbox) {
    this.etcd = new Etcd3({ hosts: [sb.etcdEndpoint], dialTimeout: 3000 });
    this.store = new EtcdResourceStore(this.etcd);
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
    const { items } = await this.store.list(networkPolicyKind, name);
    await this.store.deleteAll(items.map((np) => ({ kind: networkPolicyKind, namespace: name, name: np.metadata.name })));
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
    await this.store.applyAll(parsed.objects.map((o) => o.object));
  }

  async deletePolicy(namespace: string, name: string): Promise<void> {
    await this.store.delete({ kind: networkPolicyKind, namespace, name });
  }

  async probe(requests: readonly ProbeRequest[], timeoutMs: number): Promise<boolean[]> {
    return Promise.all(requests.map(async (r) => (await probe(this.sb, r.from, r.toIp, { port: r.port, protocol: r.protocol, timeoutMs })).connected));
  }

  async probeFromNode(requests: readonly NodeProbeRequest[], timeoutMs: number): Promise<boolean[]> {
    return Promise.all(requests.map(async (r) => ((await probeFromNode(this.sb, r.node, [r.toIp], { port: r.port, protocol: r.protocol, timeoutMs }))[0]?.connected ?? false)));
  }

  async close(): Promise<void> {
    this.etcd.close();
  }
}
