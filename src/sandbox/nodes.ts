/** Node-level operations that span the cluster, its pods and its leases. */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { readSubnetEnv } from "../agent/subnetEnv.js";
import { EtcdSubnetRegistry } from "../datastore/etcdSubnetRegistry.js";
import { formatCidr } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import { type PolicyStatus, parsePolicyStatus, policyStatusPath } from "../model/localEndpoints.js";
import { type Sandbox, type SandboxNode, nodeCniDataDir } from "./cluster.js";
import { type ServedPort, ctlRequest, spawnPodServer, waitPodServer } from "./podServer.js";
import { deletePod, listPods, podId, withEtcd } from "./pods.js";

/** The flannel prefix the sandbox's agents use for config and leases. */
export const SANDBOX_ETCD_PREFIX = "/coreos.com/network";

/** The node's pod subnet from its subnet.env ("-" before its agent wrote one). */
export async function nodeSubnet(n: SandboxNode): Promise<string> {
  const env = await readSubnetEnv(join(n.stateDir, "subnet.env"));
  return env?.subnet ? formatCidr(env.subnet) : "-";
}

/** What the node's agent has in force (its policy-status.json), or undefined before its first filter apply with policy. */
export function nodePolicyStatus(n: Pick<SandboxNode, "stateDir">): PolicyStatus | undefined {
  try {
    return parsePolicyStatus(readFileSync(policyStatusPath(nodeCniDataDir(n)), "utf8"));
  } catch {
    return undefined;
  }
}

export async function listLeases(sb: Sandbox): Promise<Lease[]> {
  return withEtcd(sb, async (c) => (await new EtcdSubnetRegistry(c, SANDBOX_ETCD_PREFIX, pino({ level: "silent" })).listLeases()).leases);
}

export const leaseSubnets = (l: Lease): string => [l.subnet, l.subnet6].filter((x) => x !== undefined).map(formatCidr).join(" ");

/** Deletes the subnet lease(s) a node holds (by node name or public address); returns their subnets. */
export async function deleteNodeLeases(sb: Sandbox, n: Pick<SandboxNode, "name" | "address">): Promise<string[]> {
  return withEtcd(sb, async (c) => {
    const reg = new EtcdSubnetRegistry(c, SANDBOX_ETCD_PREFIX, pino({ level: "silent" }));
    const mine = (await reg.listLeases()).leases.filter((l) => l.attrs.NodeName === n.name || l.attrs.PublicIP === n.address);
    for (const l of mine) await reg.deleteKey(reg.keyOf(l.subnet, l.subnet6));
    return mine.map(leaseSubnets);
  });
}

/**
 * Removes a node as a cluster would: its pods (CNI DEL while the node still exists), its
 * agent and namespace, then (unless keepLease) its subnet lease, so that the other
 * nodes unroute its subnet.
 */
export async function removeSandboxNode(sb: Sandbox, name: string | number, o: { keepLease?: boolean } = {}): Promise<{ node: string; pods: string[]; leases: string[]; warnings: string[] }> {
  const n = sb.nodeByName(String(name));
  const pods = listPods(sb).filter((p) => p.node === n.name);
  const warnings: string[] = [];
  for (const p of pods) warnings.push(...(await deletePod(sb, p)));
  await sb.removeNode(n);
  const leases = o.keepLease ? [] : await deleteNodeLeases(sb, n);
  return { node: n.name, pods: pods.map(podId), leases, warnings };
}

/** The control socket of a node's host-network server (serveOnNode), whether one runs or not. */
export const nodeServerSocket = (sb: Sandbox, n: Pick<SandboxNode, "name">): string => join(sb.o.stateDir, "s", `node-${n.name}.sock`);

/**
 * A host-network server on a node: the pod server (podServer.ts) in the node's own network
 * namespace, serving `ports` (TCP echo, UDP answers) on every address of the node, as a
 * hostNetwork pod or a node-local daemon would. Policy judges a pod reaching it on the
 * pod's own node through INPUT, on another node through FORWARD there. Resolves once it
 * serves; a node that already serves is left as it is. It stops with the node (teardown
 * and removeNode kill every process in the node's namespace).
 */
export async function serveOnNode(sb: Sandbox, name: string, ports: readonly ServedPort[]): Promise<{ pid: number; ctlSocket: string }> {
  const n = sb.nodeByName(name);
  mkdirSync(join(sb.o.stateDir, "s"), { recursive: true });
  const ctlSocket = nodeServerSocket(sb, n);
  const logFile = join(n.stateDir, "host-server.log");
  if (existsSync(ctlSocket)) {
    try {
      const { pid } = await ctlRequest<{ pid: number }>(ctlSocket, { op: "ping" }, 1000);
      return { pid, ctlSocket };
    } catch {
      /* a socket left by a server that is gone: start one */
    }
  }
  const pid = spawnPodServer(n.ns, ports, ctlSocket, logFile);
  await waitPodServer(ctlSocket, pid, logFile);
  return { pid, ctlSocket };
}
