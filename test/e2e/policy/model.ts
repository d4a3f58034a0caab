/**
 * The upstream-style NetworkPolicy test model (kubernetes/test/e2e/network/netpol):
 * namespaces x, y, z with pods a, b, c each, every pod serving TCP and UDP on ports 80
 * and 81 under named container ports. Pods are spread over three nodes by name.
 */
import type { Protocol } from "../../helpers/policyMatrix.js";

export const NAMESPACES = ["x", "y", "z"] as const;
export const POD_NAMES = ["a", "b", "c"] as const;
export const PORTS = [80, 81] as const;
export type Port = (typeof PORTS)[number];
/** A step's port: 80 or 81 for TCP and UDP, 0 for ICMP (an echo request). */
export type ProbePort = Port | 0;
export const PROBE_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "ICMP"];

/** Row/column order of every matrix. */
export const POD_KEYS: readonly string[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));

/**
 * a -> node-1, b -> node-2, c -> node-3: every matrix has same-node and cross-node pairs.
 * Every node serves the pods' ports (TCP and UDP on 80 and 81) from its own namespace, a
 * host-network server, so a step's `hosts` probes reach a node on its port and protocol.
 */
export const HOME_NODE: Readonly<Record<string, string>> = { a: "node-1", b: "node-2", c: "node-3" };
export const NODES = ["node-1", "node-2", "node-3"] as const;

/**
 * The labels of every node's Node object (the sandbox writes them): what `nodes` peers
 * select (a pod's own node too: only NetworkPolicy leaves that traffic alone). A node
 * always reaches its own pods.
 */
export function nodeLabels(node: string): Record<string, string> {
  return { "kubernetes.io/hostname": node, "kubernetes.io/os": "linux" };
}

/**
 * A host outside the cluster on the sandbox underlay (src/sandbox/external.ts), serving
 * TCP and UDP on 80 and 81 and answering pings; pods reach it through their node's
 * masquerade. Its range is TEST-NET-3.
 */
export const EXTERNAL_HOST = "ext-1";
export const EXTERNAL_RANGE = "203.0.113.0/24";

export interface NamedPort {
  name: string;
  containerPort: number;
  protocol: "TCP" | "UDP";
}

export const CONTAINER_PORTS: readonly NamedPort[] = [
  { name: "serve-80-tcp", containerPort: 80, protocol: "TCP" },
  { name: "serve-80-udp", containerPort: 80, protocol: "UDP" },
  { name: "serve-81-tcp", containerPort: 81, protocol: "TCP" },
  { name: "serve-81-udp", containerPort: 81, protocol: "UDP" },
];

export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

export function namespaceLabels(ns: string): Record<string, string> {
  return { [NAMESPACE_NAME_LABEL]: ns, ns };
}

export function podLabels(pod: string): Record<string, string> {
  return { pod };
}

export function splitKey(key: string): { namespace: string; pod: string } {
  const i = key.indexOf("/");
  if (i <= 0) throw new Error(`pod key "${key}" is not <namespace>/<pod>`);
  return { namespace: key.slice(0, i), pod: key.slice(i + 1) };
}
