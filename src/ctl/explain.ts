/**
 * `sluicectl explain`: what policy decides for one connection, and why, tier by tier;
 * with --matrix, the reachability matrix policy predicts. It reads the datastore the way
 * the agent does (the agent's PolicySource, one list), builds the same policy model
 * (buildPolicyModel) and asks the reference evaluator (PolicyEvaluator.fromModel), so
 * what it says is what the agents program.
 *
 *   sluicectl explain x/a y/b --port 80/TCP
 *   sluicectl explain x/a 203.0.113.11 --proto ICMP -o json
 *   sluicectl explain x/a x/a --port 80/TCP --hairpin   (through a Service back to itself)
 *   sluicectl explain --matrix -n x -n y --port 53/UDP
 *   sluicectl explain --sandbox x/a y/b            (the etcd of `sluicectl sandbox up`)
 *   sluicectl explain --kubeconfig-file ~/.kube/config x/a y/b   (a cluster's API server)
 */
import { isIP } from "node:net";
import type { Etcd3 } from "etcd3";
import { type Logger, pino } from "pino";
import { ConfigError } from "../config/errors.js";
import type { FlagSpec, RawFlags } from "../config/flags.js";
import { kubeConfigFrom } from "../datastore/kubeClient.js";
import { KubePolicySource } from "../datastore/kubePolicySource.js";
import { PolicySource, type InvalidValue } from "../datastore/policySource.js";
import { SLUICE_PREFIX } from "../datastore/resourceKeys.js";
import type { PodEndpoint } from "../model/endpoint.js";
import type { PolicySnapshot } from "../model/policySnapshot.js";
import { type PolicyModel, buildPolicyModel } from "../policy/model.js";
import { type DirectionVerdict, type ExplainStep, PolicyEvaluator } from "../policy/evaluate.js";
import { Sandbox } from "../sandbox/cluster.js";
import { type ConnectionSpec, type Reachability, formatPortSpec, parseConnectionSpec } from "../sandbox/probe.js";
import { RESOURCE_ETCD_FLAGS, etcdClientFrom } from "./apply.js";
import type { Io } from "./commands.js";
import { renderMatrixOutput } from "./matrixOutput.js";
import { DEFAULT_SANDBOX_STATE, namespacesFlag } from "./sandbox.js";

const SRC = "sluicectl explain";

export const EXPLAIN_USAGE = `Usage:
  sluicectl explain <ns>/<pod>|<ip> <ns>/<pod>|<ip> [--port 80/TCP | 53/UDP | icmp] [--hairpin] [-o json]
  sluicectl explain --matrix [-n ns ...] [--port 80/TCP | --proto ICMP] [-o json]

Prints the verdict (Allow or Deny), then for each end that is a pod the path that
decided its direction: egress of the source pod, ingress of the destination pod, tier by
tier (Admin, NetworkPolicy, Baseline, default). An address that is no pod's has no
policy. A pod reaching itself by its own address never leaves it (no policy sees that);
--hairpin asks about a pod reaching itself through a Service, which the Admin and
Baseline tiers judge (NetworkPolicy does not). Reads etcd like the agents
(--etcd-endpoints ..., or the current context), the sandbox's etcd with --sandbox /
--state-dir, or a cluster's API server with --kubeconfig-file / --kube-api-url / --kube
(in a pod: its service account), through the agents' own sources. Exit code: 0 Allow,
1 Deny, 2 bad arguments, 3 the datastore could not be read.`;

export const EXPLAIN_FLAGS: FlagSpec[] = [
  ...RESOURCE_ETCD_FLAGS,
  { name: "sandbox", kind: "boolean", help: "read the etcd of the sandbox (sluicectl sandbox up) at --state-dir" },
  { name: "kubeconfig-file", kind: "string", help: "read the Kubernetes API server of this kubeconfig (as sluice-agent --kube-subnet-mgr does)" },
  { name: "kube-api-url", kind: "string", help: "the Kubernetes API server URL (overrides the kubeconfig's server)" },
  { name: "kube", kind: "boolean", help: "read the Kubernetes API server (in a pod: its service account; else give --kubeconfig-file or --kube-api-url)" },
  { name: "state-dir", kind: "string", help: `the sandbox's state directory; implies --sandbox (default ${DEFAULT_SANDBOX_STATE})` },
  { name: "port", kind: "string", help: "PORT[/TCP|UDP|SCTP], or icmp (an echo request)", default: "80/TCP" },
  { name: "proto", kind: "string", help: "TCP, UDP, SCTP or ICMP, when --port does not say" },
  { name: "matrix", kind: "boolean", help: "print the reachability matrix policy predicts for every pair of pods" },
  { name: "hairpin", kind: "boolean", help: "FROM and TO are one pod, reached through a Service the service proxy sends back to it" },
  { name: "n", kind: "list", help: "--matrix: only pods of these namespaces (repeatable or comma-separated)" },
  { name: "family", kind: "string", help: "which address of a pod to use: 4 or 6", default: "4" },
  { name: "sctp-match", kind: "boolean", help: "whether the agents' iptables can match SCTP (without it SCTP rules open nothing)", default: "true" },
  { name: "o", kind: "string", help: "output: text or json", default: "text" },
];

const str = (f: RawFlags, k: string): string | undefined => (typeof f[k] === "string" ? (f[k] as string) : undefined);

// ---- reading the datastore ----

export interface LoadedModel {
  model: PolicyModel;
  /** Stored values the source refused (their last good version, or nothing, stands in). */
  invalid: InvalidValue[];
  revision: string;
}

/** What loadPolicyModel and loadKubePolicyModel list through: the agent's PolicySource or KubePolicySource. */
interface ListingSource {
  start(): Promise<void>;
  stop(): Promise<void>;
  snapshot(): PolicySnapshot;
  invalidValues(): InvalidValue[];
}

/**
 * One list through `make`'s source (given a logger that keeps the first warning's reason
 * for the error), then the policy model; `what` names the store in the error when the
 * list takes longer than `timeoutMs`.
 */
async function listOnce(what: string, timeoutMs: number, reasonOf: (line: { err?: string; msg?: string }) => string | undefined, make: (log: Logger) => ListingSource): Promise<LoadedModel> {
  let firstError = "";
  const log = pino({ level: "warn" }, { write: (line: string) => void (firstError ||= reasonOf(JSON.parse(line) as { err?: string; msg?: string }) ?? "") });
  const source = make(log);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      source.start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`error: ${what}: cannot list the policy data within ${timeoutMs} ms${firstError ? ` (${firstError})` : ""}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await source.stop();
  }
  const snapshot = source.snapshot();
  return { model: buildPolicyModel(snapshot), invalid: source.invalidValues(), revision: snapshot.revision };
}

/**
 * One list of the policy data through the agent's own PolicySource, then the policy
 * model. Fails after `timeoutMs` when etcd does not answer.
 */
export function loadPolicyModel(client: Etcd3, o: { prefix?: string | undefined; timeoutMs?: number; endpoint?: string } = {}): Promise<LoadedModel> {
  const timeoutMs = o.timeoutMs ?? 5000;
  return listOnce(`etcd at ${o.endpoint ?? "?"}`, timeoutMs, (l) => l.err, (log) => new PolicySource({ client, log, prefix: o.prefix ?? SLUICE_PREFIX, initialBackoffMs: 200, maxBackoffMs: 1000, requestTimeoutMs: timeoutMs }));
}

/**
 * One list of every policy kind, Pods, Namespaces and Nodes from the API server through
 * the agent's KubePolicySource, then the policy model. Fails after `timeoutMs`.
 */
export async function loadKubePolicyModel(o: { kubeconfigFile?: string | undefined; apiUrl?: string | undefined; timeoutMs?: number }): Promise<LoadedModel> {
  const kc = await kubeConfigFrom({ kubeconfigFile: o.kubeconfigFile, apiUrl: o.apiUrl });
  const timeoutMs = o.timeoutMs ?? 10_000;
  // No node: explain is nobody's agent, so no local records stand in for pods.
  return listOnce(`Kubernetes API at ${kc.getCurrentCluster()?.server ?? "?"}`, timeoutMs, (l) => l.err ?? l.msg, (log) => new KubePolicySource({ kc, log, nodeName: "", initialBackoffMs: 200, maxBackoffMs: 1000, requestTimeoutMs: timeoutMs }));
}

// ---- explaining ----

export type Family = 4 | 6;

/** One end of a connection: a pod (by name or by address) or an address no pod has. */
export interface End {
  /** `ns/pod`, or the address. */
  name: string;
  address: string;
  pod?: PodEndpoint | undefined;
}

export interface SideExplanation {
  /** Whose policy: the pod's `ns/name`; undefined for a non-pod end (no policy). */
  of: string | undefined;
  allowed: boolean;
  isolatedBy: string[];
  allowedBy: string | undefined;
  path: ExplainStep[];
}

export interface Explanation {
  from: End;
  to: End;
  protocol: ConnectionSpec["protocol"];
  port: number;
  /** From a pod back to itself through a Service (both ends are the same pod). */
  hairpin: boolean;
  allowed: boolean;
  egress: SideExplanation;
  ingress: SideExplanation;
}

const podName = (ep: PodEndpoint): string => `${ep.namespace}/${ep.pod}`;
const familyOf = (addr: string): Family => (isIP(addr) === 6 ? 6 : 4);

/** Explains connections over one policy model. */
export class Explainer {
  private readonly evaluator: PolicyEvaluator;

  constructor(
    readonly model: PolicyModel,
    o: { sctpSupported: boolean },
  ) {
    this.evaluator = PolicyEvaluator.fromModel(model, o);
  }

  /** The address of a pod in a family (the first one). */
  static addressOf(ep: PodEndpoint, family: Family): string | undefined {
    return ep.ips.find((a) => familyOf(a) === family);
  }

  /** `ns/pod`, `pod` (namespace default) or an address -> an end; a pod's address of `family`. */
  resolve(text: string, family: Family, field: string): End {
    if (isIP(text)) {
      const pod = this.model.endpoints.find((ep) => ep.ips.includes(text)) ?? this.evaluator.podAt(text);
      return { name: pod ? podName(pod) : text, address: text, pod };
    }
    const slash = text.indexOf("/");
    const namespace = slash >= 0 ? text.slice(0, slash) : "default";
    const name = slash >= 0 ? text.slice(slash + 1) : text;
    if (!namespace || !name || name.includes("/")) throw new ConfigError(field, `"${text}" must be <namespace>/<pod> or an IP address`, SRC);
    const pod = this.model.endpoints.find((ep) => ep.namespace === namespace && ep.pod === name);
    if (!pod) {
      const inNs = this.model.endpoints.filter((ep) => ep.namespace === namespace).map((ep) => ep.pod).sort();
      throw new ConfigError(field, `no pod ${namespace}/${name} with an endpoint in the datastore (${inNs.length ? `pods of ${namespace}: ${inNs.join(", ")}` : `no pods in namespace ${namespace}`})`, SRC);
    }
    const address = Explainer.addressOf(pod, family);
    if (!address) throw new ConfigError(field, `pod ${podName(pod)} has no IPv${family} address (it has ${pod.ips.join(", ") || "none"})`, SRC);
    return { name: podName(pod), address, pod };
  }

  /** `hairpin`: FROM and TO are one pod, and the connection goes through a Service back to it (an error otherwise). */
  explain(from: End, to: End, spec: ConnectionSpec, o: { hairpin?: boolean } = {}): Explanation {
    const hairpin = o.hairpin === true;
    if (hairpin && (from.pod === undefined || from.pod !== to.pod)) throw new ConfigError("--hairpin", `FROM and TO must be the same pod (a pod reaching itself through a Service); got ${from.name} and ${to.name}`, SRC);
    const v = this.evaluator.evaluate({ src: from.address, dst: to.address, protocol: spec.protocol, port: spec.port, hairpin });
    const egress = side(from, v.egress);
    const ingress = side(to, v.ingress);
    return { from, to, protocol: spec.protocol, port: spec.port, hairpin, allowed: v.allowed, egress, ingress };
  }

  /**
   * The matrix policy predicts over the pods of `namespaces` (every pod when empty) or the
   * pods named, by `ns/pod` in name order: the layout of `sluicectl sandbox matrix`. Pods
   * without an address of the family are left out.
   */
  matrix(spec: ConnectionSpec, o: { namespaces?: readonly string[]; pods?: readonly string[]; family?: Family } = {}): { pods: string[]; reachability: Reachability } {
    const family = o.family ?? 4;
    const wanted = o.pods ? new Set(o.pods) : undefined;
    const pods = this.model.endpoints
      .filter((ep) => (!o.namespaces?.length || o.namespaces.includes(ep.namespace)) && (!wanted || wanted.has(podName(ep))) && Explainer.addressOf(ep, family) !== undefined)
      .sort((a, b) => (podName(a) < podName(b) ? -1 : podName(a) > podName(b) ? 1 : 0));
    const m = this.evaluator.matrix({ protocol: spec.protocol, port: spec.port }, { family, pods });
    const reachability: Reachability = {};
    m.pods.forEach((f, i) => {
      const row: Record<string, boolean> = {};
      m.pods.forEach((t, j) => (row[t] = m.cells[i]?.[j]?.allowed ?? false));
      reachability[f] = row;
    });
    return { pods: m.pods, reachability };
  }
}

/** One direction: the evaluator's verdict and path for a pod end; an address that is no pod's has no policy. */
function side(end: End, v: DirectionVerdict): SideExplanation {
  if (!end.pod) return { of: undefined, allowed: true, isolatedBy: [], allowedBy: undefined, path: [] };
  return { of: end.name, allowed: v.allowed, isolatedBy: v.isolatedBy, allowedBy: v.allowedBy, path: v.path };
}

const endText = (e: End): string => (e.pod && e.name !== e.address ? `${e.name} (${e.address})` : e.address);

export function formatExplanation(x: Explanation): string {
  const lines = [`${endText(x.from)} -> ${endText(x.to)} ${formatPortSpec(x)}${x.hairpin ? " through a Service" : ""}: ${x.allowed ? "Allow" : "Deny"}`];
  for (const [d, s, e] of [["egress", x.egress, x.from], ["ingress", x.ingress, x.to]] as const) {
    if (s.of === undefined) {
      lines.push(`${d} of ${e.address}: not a pod, no policy`);
      continue;
    }
    lines.push(`${d} of ${s.of}:`);
    for (const step of s.path) lines.push(`  ${step.text}`);
  }
  return lines.join("\n") + "\n";
}

export function explanationJson(x: Explanation, warnings: readonly string[]): unknown {
  const end = (e: End): unknown => ({ name: e.name, address: e.address, pod: e.pod !== undefined, ...(e.pod ? { node: e.pod.node } : {}) });
  const sideJson = (s: SideExplanation): unknown => ({ of: s.of ?? null, allowed: s.allowed, isolatedBy: s.isolatedBy, allowedBy: s.allowedBy ?? null, path: s.path });
  return { from: end(x.from), to: end(x.to), protocol: x.protocol, port: x.port, hairpin: x.hairpin, verdict: x.allowed ? "Allow" : "Deny", allowed: x.allowed, egress: sideJson(x.egress), ingress: sideJson(x.ingress), warnings };
}

// ---- the command ----

/** Where the policy data is: the flags' etcd, or the sandbox's. */
function datastoreFrom(flags: RawFlags): { client: Etcd3; endpoint: string } {
  const stateDir = str(flags, "state-dir");
  if (flags["sandbox"] === true || stateDir !== undefined) {
    const sb = Sandbox.load(stateDir ?? DEFAULT_SANDBOX_STATE);
    return { client: sb.etcdClient(), endpoint: sb.etcdEndpoint };
  }
  return { client: etcdClientFrom(flags), endpoint: str(flags, "etcd-endpoints") ?? "http://127.0.0.1:2379" };
}

export async function runExplain(flags: RawFlags, args: string[], io: Io): Promise<number> {
  const output = str(flags, "o") ?? "text";
  if (output !== "text" && output !== "json") throw new ConfigError("-o", `"${output}" must be text or json`, SRC);
  const familyText = str(flags, "family") ?? "4";
  if (familyText !== "4" && familyText !== "6") throw new ConfigError("--family", `"${familyText}" must be 4 or 6`, SRC);
  const family = Number(familyText) as Family;
  const spec = parseConnectionSpec(str(flags, "port"), str(flags, "proto"), SRC);
  const matrixMode = flags["matrix"] === true;
  const namespaces = namespacesFlag(flags);
  if (matrixMode && args.length > 0) throw new ConfigError(args[0] as string, "--matrix takes no pods (use -n to pick namespaces)", SRC);
  if (!matrixMode && args.length !== 2) throw new ConfigError(args.length < 2 ? "TO" : (args[2] as string), args.length < 2 ? `explain needs two ends: FROM and TO (<ns>/<pod> or an IP)\n\n${EXPLAIN_USAGE}` : "unexpected argument (explain takes FROM and TO)", SRC);
  if (!matrixMode && namespaces.length > 0) throw new ConfigError("-n", "goes with --matrix", SRC);
  if (matrixMode && flags["hairpin"] === true) throw new ConfigError("--hairpin", "goes with FROM and TO, not --matrix", SRC);

  let loaded: LoadedModel;
  const kube = flags["kube"] === true || str(flags, "kubeconfig-file") !== undefined || str(flags, "kube-api-url") !== undefined;
  if (kube && (flags["sandbox"] === true || str(flags, "state-dir") !== undefined)) throw new ConfigError("--sandbox", "reads the sandbox's etcd; it cannot be combined with the Kubernetes flags", SRC);
  try {
    if (kube) loaded = await loadKubePolicyModel({ kubeconfigFile: str(flags, "kubeconfig-file"), apiUrl: str(flags, "kube-api-url") });
    else {
      const { client, endpoint } = datastoreFrom(flags);
      try {
        loaded = await loadPolicyModel(client, { prefix: str(flags, "resource-prefix"), endpoint });
      } finally {
        client.close();
      }
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    io.err(`${(err as Error).message}\n`);
    return 3;
  }
  for (const bad of loaded.invalid) io.err(`warning: the invalid value at ${bad.key} is ${bad.keptLastGood ? "replaced by its last good version" : "ignored (a policy is replaced by a deny-all stand-in)"}: ${bad.reason}\n`);
  for (const w of loaded.model.warnings) io.err(`warning: ${w}\n`);
  const ex = new Explainer(loaded.model, { sctpSupported: flags["sctp-match"] !== false });

  if (matrixMode) {
    const m = ex.matrix(spec, { namespaces, family });
    if (m.pods.length === 0) throw new ConfigError(namespaces.length ? "-n" : "--matrix", namespaces.length ? `no pods in namespace(s) ${namespaces.join(", ")}` : "the datastore has no pods with endpoints", SRC);
    io.out(renderMatrixOutput({ port: spec.port, protocol: spec.protocol, pods: m.pods, reachability: m.reachability }, { json: output === "json", yes: "allowed", no: "denied", summaryTail: " by policy", extra: { revision: loaded.revision, warnings: loaded.model.warnings } }));
    return 0;
  }

  const [fromText, toText] = args as [string, string];
  // With an address at one end, the pod at the other end uses an address of its family.
  const fam = isIP(toText) ? familyOf(toText) : isIP(fromText) ? familyOf(fromText) : family;
  const x = ex.explain(ex.resolve(fromText, fam, "FROM"), ex.resolve(toText, fam, "TO"), spec, { hairpin: flags["hairpin"] === true });
  if (x.from.address && x.to.address && familyOf(x.from.address) !== familyOf(x.to.address)) throw new ConfigError("TO", `${x.from.address} and ${x.to.address} are of different families`, SRC);
  io.out(output === "json" ? JSON.stringify(explanationJson(x, loaded.model.warnings), null, 2) + "\n" : formatExplanation(x));
  return x.allowed ? 0 : 1;
}
