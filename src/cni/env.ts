/** The CNI_* environment the runtime sets for each call, checked per command (spec 1.1.0 "Parameters"). */
import { CNI_ERR, CniError } from "./errors.js";

export const CNI_COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  /** Path of the container's network namespace ("" when the runtime did not pass one, e.g. some DELs). */
  netns: string;
  ifName: string;
  args: Map<string, string>;
  path: string[];
}

/** Linux interface names: 1-15 bytes, no '/', ':' or white space, not "." or "..". */
export const isLinuxIfName = (s: string): boolean => s.length > 0 && Buffer.byteLength(s) <= 15 && !/[/:\s]/.test(s) && s !== "." && s !== "..";
/**
 * What the plugin accepts as CNI_IFNAME: 1-15 letters, digits, '_', '.' or '-', not "." or
 * "..". The kernel takes more (anything but '/', ':' and white space), but the name goes
 * into `ip -batch` lines, where '#' starts a comment and quotes and backslashes group or
 * escape: `eth0#x` would cut the line that moves the pod end into the pod's namespace,
 * and leave that end on the node.
 */
export const isValidIfName = (s: string): boolean => /^[A-Za-z0-9_.-]{1,15}$/.test(s) && s !== "." && s !== "..";
/**
 * What the plugin accepts as CNI_NETNS: an absolute path of letters, digits and
 * `_ . - / : @ + , =` (/var/run/netns/cni-1234, /proc/42/ns/net, /run/docker/netns/ab12):
 * nothing `ip -batch` could read as a comment, a quote, an escape or a second argument.
 */
export const isValidNetnsPath = (s: string): boolean => /^\/[A-Za-z0-9_./:@+,=-]*$/.test(s);
/** The spec's rule for container IDs (libcni enforces it as well). */
export const isValidContainerId = (s: string): boolean => /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(s);

/** CNI_ARGS: "K=V;K=V" (e.g. IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0). */
export function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of text.split(";")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS: invalid pair "${pair}" (expected KEY=VALUE)`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** Which variables each command needs (VERSION needs none; GC and STATUS only CNI_PATH, which we do not use). */
const NEEDS: Record<CniCommand, { containerId: boolean; netns: boolean; ifName: boolean }> = {
  ADD: { containerId: true, netns: true, ifName: true },
  CHECK: { containerId: true, netns: true, ifName: true },
  DEL: { containerId: true, netns: false, ifName: true },
  VERSION: { containerId: false, netns: false, ifName: false },
  STATUS: { containerId: false, netns: false, ifName: false },
  GC: { containerId: false, netns: false, ifName: false },
};

export function readCniEnv(env: NodeJS.ProcessEnv): CniEnv {
  const cmd = env["CNI_COMMAND"];
  if (!cmd) throw new CniError(CNI_ERR.invalidEnv, "CNI_COMMAND is not set");
  if (!(CNI_COMMANDS as readonly string[]).includes(cmd)) throw new CniError(CNI_ERR.invalidEnv, `CNI_COMMAND "${cmd}" is unknown (expected one of ${CNI_COMMANDS.join(", ")})`);
  const command = cmd as CniCommand;
  const need = NEEDS[command];
  const containerId = env["CNI_CONTAINERID"] ?? "";
  const netns = env["CNI_NETNS"] ?? "";
  const ifName = env["CNI_IFNAME"] ?? "";
  if (need.containerId) {
    if (!containerId) throw new CniError(CNI_ERR.invalidEnv, `CNI_CONTAINERID is required for ${command}`);
    if (!isValidContainerId(containerId)) throw new CniError(CNI_ERR.invalidEnv, `CNI_CONTAINERID "${containerId}" is invalid (letters, digits, '_', '.', '-', starting with a letter or digit)`);
  }
  if (need.netns && !netns) throw new CniError(CNI_ERR.invalidEnv, `CNI_NETNS is required for ${command}`);
  // ADD writes both names into ip -batch lines, CHECK into its queries. DEL passes them as
  // argv only, and must succeed for whatever an older plugin accepted.
  const strict = command === "ADD" || command === "CHECK";
  if (netns && !strict && (!netns.startsWith("/") || /\s/.test(netns))) throw new CniError(CNI_ERR.invalidEnv, `CNI_NETNS "${netns}" must be an absolute path without white space`);
  if (netns && strict && !isValidNetnsPath(netns)) throw new CniError(CNI_ERR.invalidEnv, `CNI_NETNS ${JSON.stringify(netns)} must be an absolute path of letters, digits and _ . - / : @ + , = (anything else could be misread by ip -batch)`);
  if (need.ifName) {
    if (!ifName) throw new CniError(CNI_ERR.invalidEnv, `CNI_IFNAME is required for ${command}`);
    if (!strict && !isLinuxIfName(ifName)) throw new CniError(CNI_ERR.invalidEnv, `CNI_IFNAME "${ifName}" is not a valid interface name`);
    if (strict && !isValidIfName(ifName)) throw new CniError(CNI_ERR.invalidEnv, `CNI_IFNAME ${JSON.stringify(ifName)} must be 1-15 letters, digits, '_', '.' or '-' (anything else could be misread by ip -batch)`);
  }
  const args = parseCniArgs(env["CNI_ARGS"] ?? "");
  const path = (env["CNI_PATH"] ?? "").split(":").filter(Boolean);
  return { command, containerId, netns, ifName, args, path };
}

/**
 * Pod namespace/name from CNI_ARGS (Kubernetes runtimes set both); other runtimes get
 * "default"/<container id>. This identity goes into the host veth's alias and the pod's
 * record: a host veth of the same name is replaced only for the same pod.
 */
export function podIdentity(e: CniEnv): { namespace: string; pod: string } {
  const namespace = e.args.get("K8S_POD_NAMESPACE") || "default";
  const pod = e.args.get("K8S_POD_NAME") || e.containerId;
  for (const [k, v] of [["K8S_POD_NAMESPACE", namespace], ["K8S_POD_NAME", pod]] as const) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(v)) throw new CniError(CNI_ERR.invalidEnv, `CNI_ARGS: ${k} "${v}" is not a valid name`);
  }
  return { namespace, pod };
}
