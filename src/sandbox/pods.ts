/**
 * Pods and namespaces in a sandbox. A pod is a network namespace wired by the real CNI
 * plugin (sluice-cni ADD run in its node's namespace, as a runtime does), with its
 * metadata recorded as a Kubernetes Pod object (labels, container ports, node) in the
 * sandbox's datastore (etcd, or the API server in Kubernetes mode; objects.ts), and one
 * server process inside that serves its declared ports and makes probes on request
 * (podServer.ts). Namespaces are Namespace objects there.
 *
 * Local facts a later CLI process needs (netns, container id, server pid, addresses)
 * are kept in `<state>/pods/<ns>.<name>.json`; labels live only in the datastore.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { ConfigError } from "../config/errors.js";
import { type NamespaceObject, type PodObject, dns1123Label, dns1123Subdomain, formatIssuePath, labels as labelsSchema, namespaceObject, podObject } from "../config/k8sSchemas.js";
import { type ContainerPort, NAMESPACE_NAME_LABEL, hostIfaceName } from "../model/endpoint.js";
import { type Sandbox, type SandboxNode, isOurs } from "./cluster.js";
import { runCni } from "./cni.js";
import { addNetns, delNetns, listNetns, netnsPids } from "./netns.js";
import { spawnPodServer, waitPodServer } from "./podServer.js";

/** What `pod create` makes by default: 80 and 81, TCP and UDP, named like upstream's e2e pods. */
export const DEFAULT_POD_PORTS: readonly ContainerPort[] = [
  { name: "serve-80-tcp", containerPort: 80, protocol: "TCP" },
  { name: "serve-80-udp", containerPort: 80, protocol: "UDP" },
  { name: "serve-81-tcp", containerPort: 81, protocol: "TCP" },
  { name: "serve-81-udp", containerPort: 81, protocol: "UDP" },
];

export interface PodSpec {
  namespace: string;
  name: string;
  /** Node name (node-2) or number (2). */
  node: string | number;
  labels?: Record<string, string>;
  /** Default: DEFAULT_POD_PORTS. */
  ports?: readonly ContainerPort[];
}

/** A sandbox pod as this host knows it (the wiring facts; labels are in etcd). */
export interface SandboxPod {
  namespace: string;
  name: string;
  node: string;
  netns: string;
  containerId: string;
  uid: string;
  /** Addresses without prefix, IPv4 first. */
  ips: string[];
  hostIface: string;
  ports: ContainerPort[];
  serverPid: number;
  ctlSocket: string;
  createdAt: string;
}

export interface PodRef {
  namespace: string;
  name: string;
}

const SOURCE = "sluicectl sandbox";

/** "ns/name" (or "name" in namespace default). */
export function parsePodRef(ref: string): PodRef {
  const slash = ref.indexOf("/");
  const namespace = slash >= 0 ? ref.slice(0, slash) : "default";
  const name = slash >= 0 ? ref.slice(slash + 1) : ref;
  if (!dns1123Label.safeParse(namespace).success) throw new ConfigError("POD", `"${ref}": namespace "${namespace}" must be a DNS-1123 label`, SOURCE);
  if (!dns1123Subdomain.safeParse(name).success) throw new ConfigError("POD", `"${ref}": pod name "${name}" must be a DNS-1123 subdomain`, SOURCE);
  return { namespace, name };
}

export const podId = (p: PodRef): string => `${p.namespace}/${p.name}`;

/** `k=v,k2=v2` -> labels, validated as the API server would. */
export function parseLabels(text: string, field = "--labels"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ConfigError(field, `"${part}" must be key=value`, SOURCE);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  const r = labelsSchema.safeParse(out);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ConfigError(field, `${issue ? `${formatIssuePath(issue.path)}: ${issue.message}` : "invalid labels"}`, SOURCE);
  }
  return out;
}

/** `serve-80-tcp=80/TCP,81/UDP,8080` -> container ports (protocol defaults to TCP). */
export function parsePorts(text: string, field = "--ports"): ContainerPort[] {
  const ports: ContainerPort[] = [];
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(?:([^=]+)=)?(\d+)(?:\/([A-Za-z]+))?$/.exec(part);
    if (!m) throw new ConfigError(field, `"${part}" must be [name=]port[/TCP|UDP|SCTP]`, SOURCE);
    const protocol = (m[3] ?? "TCP").toUpperCase();
    if (protocol !== "TCP" && protocol !== "UDP" && protocol !== "SCTP") throw new ConfigError(field, `"${part}": protocol must be TCP, UDP or SCTP`, SOURCE);
    ports.push({ ...(m[1] ? { name: m[1] } : {}), containerPort: Number(m[2]), protocol });
  }
  return ports;
}

/** kubectl label style: `k=v` sets, `k-` removes. */
export interface LabelChanges {
  set: Record<string, string>;
  remove: string[];
}

export function parseLabelChanges(args: readonly string[]): LabelChanges {
  const set: Record<string, string> = {};
  const remove: string[] = [];
  for (const a of args) {
    if (a.endsWith("-") && !a.includes("=")) remove.push(a.slice(0, -1));
    else Object.assign(set, parseLabels(a, "LABEL"));
  }
  if (Object.keys(set).length === 0 && remove.length === 0) throw new ConfigError("LABEL", "give at least one key=value or key- ", SOURCE);
  return { set, remove };
}

function applyLabelChanges(labels: Record<string, string>, c: LabelChanges): Record<string, string> {
  const out = { ...labels, ...c.set };
  for (const k of c.remove) delete out[k];
  return out;
}

// ---- etcd access (leases; the objects go through sb.objects) ----

export async function withEtcd<T>(sb: Sandbox, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const c = sb.etcdClient();
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

// ---- namespaces ----

export async function getNamespace(sb: Sandbox, name: string): Promise<NamespaceObject | undefined> {
  const v = await sb.objects.get("Namespace", undefined, name);
  return v === undefined ? undefined : namespaceObject.parse(v);
}

export async function listNamespaces(sb: Sandbox): Promise<NamespaceObject[]> {
  return (await sb.objects.list("Namespace")).flatMap((v) => {
    const r = namespaceObject.safeParse(v);
    return r.success ? [r.data] : [];
  });
}

/** Writes a Namespace object (labels plus kubernetes.io/metadata.name=<name>); an existing one is an error. */
export async function createNamespace(sb: Sandbox, name: string, labels: Record<string, string> = {}): Promise<NamespaceObject> {
  if (!dns1123Label.safeParse(name).success) throw new ConfigError("NAMESPACE", `"${name}" must be a DNS-1123 label (lower-case letters, digits and '-')`, SOURCE);
  const obj = namespaceObject.parse({
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name, uid: randomUUID(), creationTimestamp: new Date().toISOString(), labels: { ...labels, [NAMESPACE_NAME_LABEL]: name } },
  });
  if (!(await sb.objects.create(obj))) throw new ConfigError("NAMESPACE", `namespace "${name}" already exists`, SOURCE);
  return obj;
}

export async function labelNamespace(sb: Sandbox, name: string, changes: LabelChanges): Promise<Record<string, string>> {
  const obj = await getNamespace(sb, name);
  if (obj === undefined) throw new ConfigError("NAMESPACE", `namespace "${name}" does not exist`, SOURCE);
  const labels = { ...applyLabelChanges(obj.metadata.labels ?? {}, changes), [NAMESPACE_NAME_LABEL]: name };
  obj.metadata.labels = labels;
  await sb.objects.put(obj);
  return labels;
}

/** Deletes a namespace object; refuses while pods of it exist. */
export async function deleteNamespace(sb: Sandbox, name: string): Promise<void> {
  const pods = listPods(sb).filter((p) => p.namespace === name);
  if (pods.length) throw new ConfigError("NAMESPACE", `namespace "${name}" still has pods (${pods.map(podId).join(", ")}); delete them first`, SOURCE);
  if (!(await sb.objects.delete("Namespace", undefined, name))) throw new ConfigError("NAMESPACE", `namespace "${name}" does not exist`, SOURCE);
}

// ---- pods ----

const podsDir = (sb: Sandbox): string => join(sb.o.stateDir, "pods");
const recordPath = (sb: Sandbox, p: PodRef): string => join(podsDir(sb), `${p.namespace}.${p.name}.json`);
const logPath = (sb: Sandbox, p: PodRef): string => join(podsDir(sb), `${p.namespace}.${p.name}.log`);
/** Short, so that the unix socket path stays under the kernel's 108 bytes. */
const socketPath = (sb: Sandbox, p: PodRef): string => join(sb.o.stateDir, "s", `${createHash("sha1").update(podId(p)).digest("hex").slice(0, 12)}.sock`);
export const podNetnsName = (sb: Sandbox, p: PodRef): string => `${sb.o.prefix}-pod-${p.namespace}.${p.name}`;

/** The local records (`*.json`) a sandbox keeps in a directory of its state; unreadable ones are skipped. */
export function readRecords<T>(dir: string): T[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .flatMap((f) => {
      try {
        return [JSON.parse(readFileSync(join(dir, f), "utf8")) as T];
      } catch {
        return [];
      }
    });
}

/** Writes a local record atomically (a temporary file, then a rename). */
export function writeRecordFile(path: string, record: unknown): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(record, null, 2) + "\n");
  renameSync(`${path}.tmp`, path);
}

export function listPods(sb: Sandbox): SandboxPod[] {
  return readRecords<SandboxPod>(podsDir(sb)).sort((a, b) => podId(a).localeCompare(podId(b)));
}

export function getPod(sb: Sandbox, ref: string | PodRef): SandboxPod {
  const p = typeof ref === "string" ? parsePodRef(ref) : ref;
  const path = recordPath(sb, p);
  if (!existsSync(path)) throw new ConfigError("POD", `no pod ${podId(p)} in the sandbox (have: ${listPods(sb).map(podId).join(", ") || "none"})`, SOURCE);
  return JSON.parse(readFileSync(path, "utf8")) as SandboxPod;
}

function writeRecord(sb: Sandbox, pod: SandboxPod): void {
  mkdirSync(podsDir(sb), { recursive: true });
  writeRecordFile(recordPath(sb, pod), pod);
}

/** The Pod objects (every namespace, or one). */
export async function podObjects(sb: Sandbox, namespace?: string): Promise<PodObject[]> {
  return (await sb.objects.list("Pod", namespace)).flatMap((v) => {
    const r = podObject.safeParse(v);
    return r.success ? [r.data] : [];
  });
}

export async function getPodObject(sb: Sandbox, ref: PodRef): Promise<PodObject | undefined> {
  const v = await sb.objects.get("Pod", ref.namespace, ref.name);
  return v === undefined ? undefined : podObject.parse(v);
}

function buildPodObject(spec: PodSpec, node: SandboxNode, uid: string, ports: readonly ContainerPort[]): PodObject {
  const r = podObject.safeParse({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: spec.name, namespace: spec.namespace, uid, creationTimestamp: new Date().toISOString(), labels: spec.labels ?? {} },
    spec: { nodeName: node.name, containers: [{ name: "serve", image: "sluice-sandbox/pod-server", ports: ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), containerPort: p.containerPort, protocol: p.protocol })) }] },
    status: { phase: "Pending" },
  });
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue ? formatIssuePath(issue.path) : "";
    const field = path.includes("ports") ? "--ports" : path.includes("labels") ? "--labels" : "POD";
    throw new ConfigError(field, `${path}: ${issue?.message ?? "invalid"}`, SOURCE);
  }
  const names = ports.flatMap((p) => (p.name ? [p.name] : []));
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new ConfigError("--ports", `port name "${dup}" is used twice`, SOURCE);
  return r.data;
}

/**
 * Creates a pod: its Pod object, its network namespace, the real CNI ADD in its
 * node's namespace, its server (waited for), and the pod IP in the object's status.
 * Anything half-made is undone when a step fails.
 */
export async function createPod(sb: Sandbox, spec: PodSpec): Promise<SandboxPod> {
  const ref = parsePodRef(`${spec.namespace}/${spec.name}`);
  const node = sb.nodeByName(String(spec.node));
  const ports = [...(spec.ports ?? DEFAULT_POD_PORTS)];
  const uid = randomUUID();
  const obj = buildPodObject(spec, node, uid, ports);
  if (existsSync(recordPath(sb, ref))) throw new ConfigError("POD", `pod ${podId(ref)} already exists`, SOURCE);
  const ctlSocket = socketPath(sb, ref);
  if (Buffer.byteLength(ctlSocket) > 107) throw new ConfigError("--state-dir", `"${sb.o.stateDir}" is too long for the pods' control sockets (${ctlSocket} exceeds 107 bytes)`, SOURCE);
  if ((await sb.objects.get("Namespace", undefined, ref.namespace)) === undefined) throw new ConfigError("POD", `namespace "${ref.namespace}" does not exist (create it with: sluicectl sandbox ns create ${ref.namespace})`, SOURCE);
  if (!(await sb.objects.create(obj))) throw new ConfigError("POD", `pod ${podId(ref)} already exists in the datastore`, SOURCE);
  const netns = podNetnsName(sb, ref);
  const containerId = randomBytes(32).toString("hex");
  const pod: SandboxPod = { ...ref, node: node.name, netns, containerId, uid, ips: [], hostIface: hostIfaceName(ref.namespace, ref.name), ports, serverPid: 0, ctlSocket, createdAt: new Date().toISOString() };
  let wired = false;
  // Everything after the Pod object's put is inside the try: a failure (an agent that never
  // gets ready included) removes the object, so the same create can be retried.
  try {
    if (!existsSync(join(node.stateDir, "subnet.env"))) await sb.waitReady(node);
    mkdirSync(podsDir(sb), { recursive: true });
    mkdirSync(join(sb.o.stateDir, "s"), { recursive: true });
    await addNetns(netns);
    wired = true;
    pod.ips = await wire(sb, node, pod);
    if (pod.ips.length === 0) throw new Error(`sluice-cni ADD for ${podId(ref)} returned no address`);
    // SCTP ports too: the server serves them where the kernel has SCTP sockets and says so where not.
    const served = ports.map((p) => ({ port: p.containerPort, protocol: p.protocol }));
    const uniq = served.filter((p, i) => served.findIndex((q) => q.port === p.port && q.protocol === p.protocol) === i);
    pod.serverPid = spawnPodServer(netns, uniq, ctlSocket, logPath(sb, ref));
    await waitPodServer(ctlSocket, pod.serverPid, logPath(sb, ref));
    writeRecord(sb, pod);
    // As a kubelet does once the sandbox is up: only now does the datastore learn the address.
    const cur = await getPodObject(sb, ref);
    if (!cur) throw new Error(`pod ${podId(ref)} vanished from the datastore while it was created`);
    cur.status = { ...(cur.status ?? {}), phase: "Running", podIP: pod.ips[0], podIPs: pod.ips.map((a) => ({ ip: a })) };
    await sb.objects.put(cur);
    return pod;
  } catch (err) {
    await removePodParts(sb, pod, wired).catch(() => undefined);
    throw err;
  }
}

/** CNI ADD; returns the pod's addresses, IPv4 first. */
async function wire(sb: Sandbox, node: SandboxNode, pod: SandboxPod): Promise<string[]> {
  const result = await runCni(sb, node, "ADD", cniArgs(pod));
  const ips = (result.ips ?? []).map((i) => i.address.split("/")[0] as string);
  return [...ips.filter((a) => !a.includes(":")), ...ips.filter((a) => a.includes(":"))];
}

const cniArgs = (pod: SandboxPod): Parameters<typeof runCni>[3] => ({ containerId: pod.containerId, netnsPath: `/var/run/netns/${pod.netns}`, ifName: "eth0", podNamespace: pod.namespace, podName: pod.name });

/**
 * Deletes a pod: CNI DEL, its server, its namespace, its Pod object and record. Returns
 * warnings for steps that failed but were worked around (the pod is gone either way).
 */
export async function deletePod(sb: Sandbox, ref: string | PodRef): Promise<string[]> {
  const pod = getPod(sb, ref);
  return removePodParts(sb, pod, true);
}

async function removePodParts(sb: Sandbox, pod: SandboxPod, wired: boolean): Promise<string[]> {
  const warnings: string[] = [];
  const node = sb.nodes.find((n) => n.name === pod.node);
  const namespaces = await listNetns();
  if (wired && node && namespaces.includes(node.ns)) {
    try {
      await runCni(sb, node, "DEL", cniArgs(pod));
    } catch (err) {
      warnings.push((err as Error).message);
    }
  }
  const serverPid = pod.serverPid && isOurs(pod.serverPid, sb.o.stateDir) ? [pod.serverPid] : [];
  for (const pid of [...serverPid, ...(namespaces.includes(pod.netns) ? await netnsPids(pod.netns) : [])]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  if (namespaces.includes(pod.netns)) await delNetns(pod.netns);
  await sb.objects.delete("Pod", pod.namespace, pod.name);
  // The node's agent deletes the pod's workload endpoint once DEL removed its record on the
  // node; a node that is going (or a DEL that failed) leaves it to us.
  await sb.objects.forgetEndpoints(pod.node, pod.namespace, pod.name);
  for (const f of [recordPath(sb, pod), logPath(sb, pod), pod.ctlSocket]) rmSync(f, { force: true });
  return warnings;
}

export async function labelPod(sb: Sandbox, ref: string | PodRef, changes: LabelChanges): Promise<Record<string, string>> {
  const p = typeof ref === "string" ? parsePodRef(ref) : ref;
  const obj = await getPodObject(sb, p);
  if (obj === undefined) throw new ConfigError("POD", `no pod ${podId(p)} in the datastore`, SOURCE);
  const labels = applyLabelChanges(obj.metadata.labels ?? {}, changes);
  const r = labelsSchema.safeParse(labels);
  if (!r.success) throw new ConfigError("LABEL", r.error.issues[0]?.message ?? "invalid", SOURCE);
  obj.metadata.labels = labels;
  await sb.objects.put(obj);
  return labels;
}
