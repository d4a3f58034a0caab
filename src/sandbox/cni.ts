/**
 * Runs the real CNI plugin the way a container runtime does: inside the node's network
 * namespace, CNI_* in the environment, the network configuration on stdin, the result
 * (or a CNI error) as JSON on stdout.
 */
import { run } from "../dataplane/exec.js";
import { join } from "node:path";
import { type Sandbox, type SandboxNode, nodeCniDataDir } from "./cluster.js";
import { binPath } from "./paths.js";

export type CniCommand = "ADD" | "DEL" | "CHECK";

export interface CniPodArgs {
  containerId: string;
  /** Path of the pod's network namespace (/var/run/netns/<name>). */
  netnsPath: string;
  ifName: string;
  podNamespace: string;
  podName: string;
}

/** The subset of a CNI result the sandbox reads. */
export interface CniResult {
  cniVersion?: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
}

export class CniError extends Error {
  constructor(
    readonly command: CniCommand,
    readonly code: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** The network configuration the sandbox hands the plugin for a node. */
export function cniNetconf(sb: Sandbox, node: SandboxNode): Record<string, unknown> {
  return {
    cniVersion: "1.1.0",
    name: "sluice",
    type: "sluice",
    subnetFile: join(node.stateDir, "subnet.env"),
    dataDir: nodeCniDataDir(node),
    nodeName: node.name,
    // Either datastore: the plugin talks to none, the node's agent learns the pod from its record on the node.
    ...(sb.o.policyReadyTimeoutMs ? { policyReadyTimeoutMs: sb.o.policyReadyTimeoutMs } : {}),
  };
}

/** The default timeout only ends a plugin that hangs; an emulated CPU (the vm suite) needs tens of seconds per run. */
export async function runCni(sb: Sandbox, node: SandboxNode, command: CniCommand, a: CniPodArgs, timeoutMs = 120_000): Promise<CniResult> {
  const bin = sb.o.cniBin ?? binPath("sluice-cni");
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netnsPath,
    CNI_IFNAME: a.ifName,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${a.podNamespace};K8S_POD_NAME=${a.podName};K8S_POD_INFRA_CONTAINER_ID=${a.containerId}`,
    CNI_PATH: "/usr/lib/cni",
  };
  const { code, stdout, stderr } = await run("ip", ["netns", "exec", node.ns, process.execPath, bin], JSON.stringify(cniNetconf(sb, node)), timeoutMs, env);
  let parsed: unknown;
  try {
    parsed = stdout.trim() ? JSON.parse(stdout) : {};
  } catch {
    parsed = undefined;
  }
  const obj = (parsed ?? {}) as { code?: number; msg?: string; details?: string };
  if (code !== 0 || obj.code !== undefined) {
    const what = obj.msg ? `${obj.msg}${obj.details ? ` (${obj.details})` : ""}` : stderr.trim() || stdout.trim() || `exit ${code}`;
    throw new CniError(command, obj.code, `sluice-cni ${command} for ${a.podNamespace}/${a.podName} on ${node.name} failed: ${what}`);
  }
  if (parsed === undefined) throw new CniError(command, undefined, `sluice-cni ${command} printed no JSON result: ${stdout.slice(0, 200)}`);
  return parsed as CniResult;
}
