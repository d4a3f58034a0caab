/**
 * A synthetic but plausible cluster for the policy benchmarks: namespaces owned by teams,
 * pods of a dozen app kinds (Zipf-distributed) with app/tier/team/version/track labels and
 * the container ports their kind would have (named ports included), workload endpoint
 * records spread over nodes, and NetworkPolicies of the shapes people actually write
 * (default deny, per-app allow lists, namespaceSelector peers, ipBlock with except,
 * named ports, endPort ranges, egress). Pure and seeded: the same options give the same
 * cluster, so runs compare.
 */
import { randomBytes } from "node:crypto";
import type { NamespaceObject, NetworkPolicyObject, PodObject } from "../../src/config/k8sSchemas.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../../src/model/endpoint.js";
import { cidrHost, formatIp, parseCidr } from "../../src/model/ip.js";

export interface SynthOptions {
  namespaces: number;
  pods: number;
  localPods: number;
  policies: number;
  /** Nodes other than the local one that carry the remaining pods. */
  remoteNodes: number;
  localNode: string;
  /** Subnet of the local node (its pods get addresses from it). */
  localSubnet: string;
  /** Subnet of remote node k (1-based). */
  remoteSubnet: (k: number) => string;
  seed: number;
}

export interface SynthCluster {
  namespaces: NamespaceObject[];
  pods: PodObject[];
  endpoints: WorkloadEndpointRecord[];
  policies: NetworkPolicyObject[];
}

type Json = Record<string, unknown>;

/** mulberry32: a small seeded PRNG (quality is plenty for picking labels). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TEAMS = ["payments", "search", "identity", "catalog", "checkout", "data", "platform", "growth"];
/** App kinds, most common first (drawn with Zipf weights). */
const KINDS = ["api", "web", "worker", "cache", "db", "gateway", "auth", "search", "queue", "cron", "ui", "metrics"] as const;
type AppKind = (typeof KINDS)[number];
const TIER: Record<AppKind, string> = { api: "backend", auth: "backend", search: "backend", web: "frontend", ui: "frontend", gateway: "frontend", worker: "worker", queue: "worker", cron: "worker", cache: "data", db: "data", metrics: "infra" };
const PORTS: Record<AppKind, Array<{ name: string; containerPort: number; protocol?: "UDP" }>> = {
  api: [{ name: "http", containerPort: 8080 }, { name: "grpc", containerPort: 50051 }, { name: "metrics", containerPort: 9090 }],
  auth: [{ name: "http", containerPort: 8080 }, { name: "grpc", containerPort: 50051 }, { name: "metrics", containerPort: 9090 }],
  search: [{ name: "http", containerPort: 9200 }, { name: "transport", containerPort: 9300 }, { name: "metrics", containerPort: 9114 }],
  web: [{ name: "http", containerPort: 8080 }, { name: "metrics", containerPort: 9090 }],
  ui: [{ name: "http", containerPort: 3000 }],
  gateway: [{ name: "http", containerPort: 8080 }, { name: "https", containerPort: 8443 }, { name: "metrics", containerPort: 9090 }],
  worker: [{ name: "metrics", containerPort: 9090 }],
  queue: [{ name: "amqp", containerPort: 5672 }, { name: "metrics", containerPort: 15692 }],
  cron: [],
  cache: [{ name: "redis", containerPort: 6379 }, { name: "metrics", containerPort: 9121 }],
  db: [{ name: "postgres", containerPort: 5432 }, { name: "metrics", containerPort: 9187 }],
  metrics: [{ name: "metrics", containerPort: 9100 }, { name: "statsd", containerPort: 8125, protocol: "UDP" }],
};
const DNS_PORTS = [{ name: "dns", containerPort: 53, protocol: "UDP" as const }, { name: "dns-tcp", containerPort: 53 }, { name: "metrics", containerPort: 9153 }];

export const SYSTEM_NS = "kube-system";
export const MONITORING_NS = "monitoring";

function pickWeighted<T>(items: readonly T[], rnd: () => number, s = 1.1): T {
  const w = items.map((_, i) => 1 / Math.pow(i + 1, s));
  let x = rnd() * w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < items.length; i++) {
    x -= w[i] as number;
    if (x <= 0) return items[i] as T;
  }
  return items[items.length - 1] as T;
}

const pick = <T>(items: readonly T[], rnd: () => number): T => items[Math.floor(rnd() * items.length)] as T;

function nsName(i: number): string {
  if (i === 0) return SYSTEM_NS;
  if (i === 1) return MONITORING_NS;
  const team = TEAMS[i % TEAMS.length] as string;
  return `${team}-${["prod", "staging", "dev"][i % 3]}-${i}`;
}

export function synthCluster(o: SynthOptions): SynthCluster {
  const rnd = prng(o.seed);
  const namespaces: NamespaceObject[] = [];
  const nsTeam = new Map<string, string>();
  for (let i = 0; i < o.namespaces; i++) {
    const name = nsName(i);
    const team = i < 2 ? "platform" : (TEAMS[i % TEAMS.length] as string);
    const env = i < 2 ? "prod" : (["prod", "staging", "dev"][i % 3] as string);
    nsTeam.set(name, team);
    const labels: Record<string, string> = { team, env };
    if (i === 0) labels["role"] = "system";
    if (i === 1) labels["role"] = "monitoring";
    if (i % 5 === 2) labels["compliance"] = "pci";
    namespaces.push({ apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
  }
  const nsNames = namespaces.map((n) => n.metadata.name);

  // Pods: as even as possible over the namespaces; kube-system gets DNS servers first.
  const pods: PodObject[] = [];
  const podKind = new Map<string, AppKind | "dns">();
  for (let p = 0; p < o.pods; p++) {
    const ns = nsNames[p % nsNames.length] as string;
    const idx = Math.floor(p / nsNames.length);
    const isDns = ns === SYSTEM_NS && idx < 4;
    const kind: AppKind | "dns" = isDns ? "dns" : ns === MONITORING_NS && idx < 10 ? "metrics" : pickWeighted(KINDS, rnd);
    const team = rnd() < 0.9 ? (nsTeam.get(ns) as string) : pick(TEAMS, rnd);
    const version = pickWeighted(["v1", "v2", "v3"], rnd, 1.5);
    const app = kind === "dns" ? "coredns" : kind;
    const name = `${app}-${(p * 7919).toString(36).padStart(5, "0")}-${randomish(rnd)}`;
    const labels: Record<string, string> = kind === "dns" ? { "k8s-app": "kube-dns", app, tier: "infra", team: "platform", version: "v1" } : { app, tier: TIER[kind], team, version };
    if (rnd() < 0.05) labels["track"] = "canary";
    else if (rnd() < 0.5) labels["track"] = "stable";
    const ports = kind === "dns" ? DNS_PORTS : PORTS[kind];
    pods.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: ns, labels },
      spec: { nodeName: "", containers: [{ name: app, image: `registry.example/${app}:${version}`, ports: ports.map((q) => ({ name: q.name, containerPort: q.containerPort, protocol: q.protocol ?? "TCP" })) }] },
    });
    podKind.set(`${ns}/${name}`, kind);
  }

  // Nodes: the first `localPods` of a shuffled order are local, the rest round-robin remote.
  const order = pods.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const perNode = new Map<string, number>();
  const endpoints: WorkloadEndpointRecord[] = [];
  order.forEach((podIdx, k) => {
    const pod = pods[podIdx] as PodObject;
    const node = k < o.localPods ? o.localNode : `node-${(k % o.remoteNodes) + 1}`;
    const subnet = parseCidr(node === o.localNode ? o.localSubnet : o.remoteSubnet(Number(node.slice(5))));
    const n = perNode.get(node) ?? 0;
    perNode.set(node, n + 1);
    const ip = formatIp(cidrHost(subnet, BigInt(n + 2)));
    pod.spec.nodeName = node;
    pod.status = { podIP: ip, podIPs: [{ ip }], phase: "Running" };
    const ns = pod.metadata.namespace;
    endpoints.push({
      node,
      namespace: ns,
      pod: pod.metadata.name,
      containerId: randomBytes(32).toString("hex"),
      ifName: "eth0",
      hostIface: hostIfaceName(ns, pod.metadata.name),
      ips: [ip],
      mac: `0a:58:${ip
        .split(".")
        .map((b) => Number(b).toString(16).padStart(2, "0"))
        .join(":")}`,
    });
  });

  // Policies: an even share per namespace, cycling through the shapes below.
  const policies: NetworkPolicyObject[] = [];
  const appsIn = new Map<string, AppKind[]>();
  for (const p of pods) {
    const k = podKind.get(`${p.metadata.namespace}/${p.metadata.name}`);
    if (!k || k === "dns") continue;
    const list = appsIn.get(p.metadata.namespace) ?? [];
    if (!list.includes(k)) list.push(k);
    appsIn.set(p.metadata.namespace, list);
  }
  for (let i = 0; i < o.policies; i++) {
    const ns = nsNames[i % nsNames.length] as string;
    const slot = Math.floor(i / nsNames.length);
    const apps = appsIn.get(ns) ?? ["api"];
    const team = nsTeam.get(ns) as string;
    const spec = policyShape(slot, ns, team, apps, rnd);
    policies.push({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: `${spec.name}-${slot}`, namespace: ns }, spec: spec.spec as NetworkPolicyObject["spec"] });
  }
  return { namespaces, pods, endpoints, policies };
}

function randomish(rnd: () => number): string {
  const chars = "bcdfghjklmnpqrstvwxz2456789";
  let s = "";
  for (let i = 0; i < 5; i++) s += chars[Math.floor(rnd() * chars.length)];
  return s;
}

const ml = (labels: Record<string, string>): Json => ({ matchLabels: labels });

/** The shapes, by slot inside the namespace (slot 0 is the namespace's default deny). */
function policyShape(slot: number, ns: string, team: string, apps: readonly AppKind[], rnd: () => number): { name: string; spec: Json } {
  const app = (): AppKind => pick(apps, rnd);
  const otherTeam = (): string => pick(TEAMS, rnd);
  const shape = slot === 0 ? 0 : 1 + ((slot - 1) % 12);
  switch (shape) {
    case 0:
      return { name: "default-deny", spec: { podSelector: {}, policyTypes: ["Ingress"] } };
    case 1: {
      const a = app();
      return {
        name: `allow-${a}-from-peers`,
        spec: {
          podSelector: ml({ app: a }),
          ingress: [{ from: [{ podSelector: ml({ app: app() }) }, { podSelector: ml({ tier: "frontend" }), namespaceSelector: ml({ team }) }], ports: [{ port: "http" }, { port: 9090 }] }],
        },
      };
    }
    case 2:
      return { name: "allow-monitoring", spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: ml({ role: "monitoring" }), podSelector: ml({ app: "metrics" }) }], ports: [{ port: "metrics" }] }] } };
    case 3:
      return {
        name: "data-access",
        spec: {
          podSelector: ml({ tier: "data" }),
          ingress: [
            {
              from: [{ podSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["backend", "worker"] }, { key: "version", operator: "NotIn", values: ["v1"] }] } }],
              ports: [{ port: "postgres" }, { port: "redis" }],
            },
          ],
        },
      };
    case 4:
      return {
        name: "frontend-from-outside",
        spec: {
          podSelector: ml({ tier: "frontend" }),
          ingress: [
            { from: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "172.16.0.0/12", "169.254.0.0/16"] } }], ports: [{ port: 8080 }, { port: 8443 }] },
            { from: [{ ipBlock: { cidr: "10.0.0.0/12", except: [`10.0.${4 * Math.floor(rnd() * 60) + 8}.0/22`] } }], ports: [{ port: "http" }] },
          ],
        },
      };
    case 5:
      return { name: "nodeports", spec: { podSelector: ml({ tier: "frontend" }), ingress: [{ from: [{ ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.255.0/24"] } }], ports: [{ protocol: "TCP", port: 30000, endPort: 32767 }] }] } };
    case 6:
      return {
        name: "egress-baseline",
        spec: {
          podSelector: {},
          policyTypes: ["Egress"],
          egress: [
            { to: [{ namespaceSelector: ml({ "kubernetes.io/metadata.name": SYSTEM_NS }), podSelector: ml({ "k8s-app": "kube-dns" }) }], ports: [{ protocol: "UDP", port: "dns" }, { protocol: "TCP", port: "dns-tcp" }] },
            { to: [{ podSelector: {} }] },
          ],
        },
      };
    case 7:
      return {
        name: "backend-egress-data",
        spec: {
          podSelector: ml({ tier: "backend" }),
          policyTypes: ["Egress"],
          egress: [
            {
              to: [{ podSelector: ml({ tier: "data" }) }, { namespaceSelector: { matchExpressions: [{ key: "env", operator: "In", values: ["prod", "staging"] }] }, podSelector: ml({ tier: "data", team }) }],
              ports: [{ port: "postgres" }, { port: "redis" }, { port: 9200, endPort: 9300 }],
            },
          ],
        },
      };
    case 8: {
      const a = app();
      return {
        name: `${a}-egress-external`,
        spec: {
          podSelector: ml({ app: a }),
          policyTypes: ["Egress"],
          egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] } }], ports: [{ port: 443 }, { protocol: "UDP", port: 123 }] }],
        },
      };
    }
    case 9:
      return {
        name: "canary",
        spec: { podSelector: ml({ track: "canary" }), ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "track", operator: "Exists" }] } }, { namespaceSelector: { matchExpressions: [{ key: "compliance", operator: "DoesNotExist" }] }, podSelector: ml({ tier: "frontend" }) }] }] },
      };
    case 10: {
      const t = otherTeam();
      return {
        name: `api-from-${t}`,
        spec: { podSelector: ml({ app: "api" }), ingress: [{ from: [{ namespaceSelector: ml({ team: t }), podSelector: ml({ app: "web" }) }, { namespaceSelector: ml({ team: t }), podSelector: ml({ app: "gateway" }) }], ports: [{ port: "grpc" }, { port: 8000, endPort: 8100 }] }] },
      };
    }
    case 11: {
      const a = app();
      const b = app();
      return {
        name: `${a}-v2-from-${b}`,
        spec: {
          podSelector: ml({ app: a, version: "v2" }),
          ingress: [{ from: [{ podSelector: { matchLabels: { app: b }, matchExpressions: [{ key: "version", operator: "In", values: ["v2", "v3"] }] } }], ports: [{ port: "http" }, { protocol: "UDP", port: "statsd" }] }],
        },
      };
    }
    default: {
      const a = app();
      return {
        name: `${a}-both-ways`,
        spec: {
          podSelector: ml({ app: a }),
          policyTypes: ["Ingress", "Egress"],
          ingress: [{ from: [{ namespaceSelector: ml({ team }) }, { namespaceSelector: ml({ env: ns.includes("-prod-") ? "prod" : "staging" }), podSelector: ml({ app: a }) }] }],
          egress: [{ to: [{ podSelector: ml({ app: app() }) }, { ipBlock: { cidr: "10.0.0.0/12", except: ["10.0.4.0/22"] } }], ports: [{ port: "http" }, { port: 5432 }] }],
        },
      };
    }
  }
}
