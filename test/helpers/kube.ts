/** Shared bits of the Kubernetes datastore tests: a client config for a fake API server, objects, waiting. */
import type { KubeConfig } from "@kubernetes/client-node" with { "resolution-mode": "import" };
import { loadK8s } from "../../src/datastore/kubeClient.js";
import type { FakeObject } from "./fakeKubeApi.js";

/** A KubeConfig for a fake API server (through the real loader, from its kubeconfig text). */
export async function kubeConfigFor(api: { kubeconfig(): string }): Promise<KubeConfig> {
  const k8s = await loadK8s();
  const kc = new k8s.KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return kc;
}

export async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function nodeObject(name: string, o: { podCIDRs?: string[]; annotations?: Record<string, string>; labels?: Record<string, string>; addresses?: string[] } = {}): FakeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels: { "kubernetes.io/hostname": name, ...o.labels }, ...(o.annotations ? { annotations: o.annotations } : {}) },
    spec: o.podCIDRs?.length ? { podCIDR: o.podCIDRs[0], podCIDRs: o.podCIDRs } : {},
    status: {
      addresses: [...(o.addresses ?? []).map((a) => ({ type: "InternalIP", address: a })), { type: "Hostname", address: name }],
      conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }],
    },
  };
}

export function namespaceObject(name: string, labels: Record<string, string> = {}): FakeObject {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { "kubernetes.io/metadata.name": name, ...labels } }, spec: { finalizers: ["kubernetes"] }, status: { phase: "Active" } };
}

export interface PodSpec {
  node?: string;
  ips?: string[];
  labels?: Record<string, string>;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  hostNetwork?: boolean;
  phase?: string;
}

/** A Pod as the API server holds it (status filled in by the kubelet when it has IPs). */
export function podObject(namespace: string, name: string, p: PodSpec = {}): FakeObject {
  const ips = p.ips ?? [];
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: p.labels ?? {}, ownerReferences: [], managedFields: [] },
    spec: {
      ...(p.node ? { nodeName: p.node } : {}),
      ...(p.hostNetwork ? { hostNetwork: true } : {}),
      containers: [{ name: "main", image: "registry.example/app:1", ports: (p.ports ?? []).map((x) => ({ ...x, protocol: x.protocol ?? "TCP" })) }],
      restartPolicy: "Always",
    },
    status: { phase: p.phase ?? (ips.length ? "Running" : "Pending"), ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}) },
  };
}

export function networkPolicyObject(namespace: string, name: string, spec: Record<string, unknown>): FakeObject {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec };
}
