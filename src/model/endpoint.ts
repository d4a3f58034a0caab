/**
 * Workload endpoints: what the CNI plugin wires and records, and the pod metadata the
 * orchestrator supplies. Shared by the CNI plugin, the datastores, the policy engine and
 * the sandbox, so it holds plain data and pure helpers only.
 */
import { createHash } from "node:crypto";

export type Protocol = "TCP" | "UDP" | "SCTP";
export const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

/** A container port as a Pod declares it (named ports resolve against these). */
export interface ContainerPort {
  name?: string | undefined;
  containerPort: number;
  protocol: Protocol;
}

/**
 * What the CNI plugin records for a wired pod interface (etcd mode), and what the
 * Kubernetes datastore derives from a Pod. `ips` are plain addresses, no prefix.
 */
export interface WorkloadEndpointRecord {
  node: string;
  namespace: string;
  pod: string;
  containerId: string;
  /** The interface inside the pod (CNI_IFNAME, usually eth0). */
  ifName: string;
  /** The host side of the veth pair: hostIfaceName(namespace, pod). */
  hostIface: string;
  ips: string[];
  mac?: string | undefined;
}

/** Everything the policy engine knows about one pod: endpoint facts joined with metadata. */
export interface PodEndpoint {
  namespace: string;
  pod: string;
  node: string;
  hostIface: string;
  ips: string[];
  labels: Record<string, string>;
  ports: ContainerPort[];
  /**
   * False when the endpoint's Pod or Namespace object is missing (or invalid), so its
   * labels are unknown: policy then matches it with no selector and isolates it both
   * ways (fail closed). Absent means known.
   */
  metadataKnown?: boolean;
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

/** Every host-side pod interface starts with this, so dispatch can match `slc+`. */
export const HOST_IFACE_PREFIX = "slc";

/**
 * The host-side veth name of a pod: deterministic from namespace/pod, so the agent finds
 * a pod's interface without asking the runtime (Calico does the same with `cali`).
 * 3 + 12 hex characters = 15, the kernel's limit.
 */
export function hostIfaceName(namespace: string, pod: string): string {
  return HOST_IFACE_PREFIX + createHash("sha1").update(`${namespace}.${pod}`).digest("hex").slice(0, 12);
}

/** The label every namespace carries in Kubernetes >= 1.21; we set it too. */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";
