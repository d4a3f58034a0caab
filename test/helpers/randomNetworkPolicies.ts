/**
 * Seeded random clusters with NetworkPolicies: three namespaces with random labels, pods on
 * two nodes (dual stack, v4-only, v6-only) with random labels and named ports, up to four
 * policies built from every field of networking.k8s.io/v1. One generator for the two checks
 * that read the same scenarios: the simulated chains against the reference evaluator
 * (test/unit/policyRender.test.ts) and against the independent oracle
 * (test/unit/policyOracle.test.ts). Each policy is kept as written (`raw`, what the oracle
 * reads) and as the schema parses it (`policies`, what the product reads).
 */
import { type NetworkPolicyObject, networkPolicyObject } from "../../src/config/k8sSchemas.js";
import { type ContainerPort, type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";

/** The seed and number of rounds both checks use. */
export const RANDOM_NP_SEED = 20261121;
export const RANDOM_NP_ROUNDS = 60;

/** The node whose pods get the 10.244.1.0/24 addresses, and the other one (10.244.2.0/24). */
export const RANDOM_NP_NODES = ["n1", "n2"] as const;

export interface RawNetworkPolicy {
  namespace: string;
  name: string;
  spec: Record<string, unknown>;
}

export interface RandomNetworkPolicyScenario {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  raw: RawNetworkPolicy[];
  policies: NetworkPolicyObject[];
  sctp: boolean;
}

const tcp = (name: string, containerPort: number): ContainerPort => ({ name, containerPort, protocol: "TCP" });

export function randomNetworkPolicyScenario(rnd: () => number): RandomNetworkPolicyScenario {
  const [local, remote] = RANDOM_NP_NODES;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const maybe = (p = 0.5): boolean => rnd() < p;
  const nsNames = ["a", "b", "c"];
  const nss: NamespaceInfo[] = nsNames.map((n) => ({ name: n, labels: { ...(maybe() ? { team: pick(["x", "y"]) } : {}), ...(maybe() ? { env: pick(["p", "d"]) } : {}) } }));
  const portsPool: ContainerPort[] = [tcp("http", 80), tcp("http", 8080), { name: "dns", containerPort: 53, protocol: "UDP" }, tcp("metrics", 9090), { name: "http", containerPort: 80, protocol: "SCTP" }];
  const eps: PodEndpoint[] = [];
  const n = 4 + Math.floor(rnd() * 5);
  for (let k = 0; k < n; k++) {
    const node = maybe(0.6) ? local : remote;
    const sub = node === local ? 1 : 2;
    const ips = maybe(0.8) ? `10.244.${sub}.${10 + k} fd00:244:${sub}::${10 + k}` : maybe() ? `10.244.${sub}.${10 + k}` : `fd00:244:${sub}::${10 + k}`;
    const labels: Record<string, string> = {};
    if (maybe(0.8)) labels["app"] = pick(["web", "db", "api"]);
    if (maybe(0.4)) labels["tier"] = pick(["1", "2"]);
    const ports = portsPool.filter(() => maybe(0.3)).filter((p, i, all) => all.findIndex((q) => q.name === p.name) === i);
    const ns = pick(nsNames);
    eps.push({ namespace: ns, pod: `p${k}`, node, hostIface: hostIfaceName(ns, `p${k}`), ips: ips.split(" "), labels, ports });
  }
  const selector = (): unknown => {
    const r = rnd();
    if (r < 0.3) return {};
    if (r < 0.6) return { matchLabels: { app: pick(["web", "db", "api"]) } };
    if (r < 0.75) return { matchExpressions: [{ key: "app", operator: pick(["In", "NotIn"]), values: [pick(["web", "db"]), pick(["api", "db"])] }] };
    return { matchExpressions: [{ key: pick(["tier", "app"]), operator: pick(["Exists", "DoesNotExist"]) }] };
  };
  const nsSelector = (): unknown => pick([{}, { matchLabels: { team: "x" } }, { matchExpressions: [{ key: "env", operator: pick(["Exists", "DoesNotExist"]) }] }, { matchLabels: { "kubernetes.io/metadata.name": pick(nsNames) } }]);
  const peer = (): unknown => {
    const r = rnd();
    if (r < 0.3) return { podSelector: selector() };
    if (r < 0.5) return { namespaceSelector: nsSelector() };
    if (r < 0.7) return { namespaceSelector: nsSelector(), podSelector: selector() };
    return { ipBlock: pick([{ cidr: "10.244.0.0/16", except: ["10.244.2.0/24"] }, { cidr: "0.0.0.0/0", except: ["10.244.1.0/24"] }, { cidr: "0.0.0.0/0" }, { cidr: "192.0.2.0/24" }, { cidr: "10.244.1.10/32" }, { cidr: "fd00:244::/32", except: ["fd00:244:1::/64"] }, { cidr: "::/0" }]) };
  };
  const port = (): unknown =>
    pick([{ port: 80 }, { port: 80, endPort: 9000 }, { port: "http" }, { port: "dns", protocol: "UDP" }, { protocol: "UDP" }, { protocol: "SCTP", port: 80 }, { protocol: "SCTP", port: "http" }, { port: "metrics" }, { port: 53, protocol: "UDP" }]);
  const list = <T>(f: () => T, max: number): T[] => Array.from({ length: Math.floor(rnd() * (max + 1)) }, f);
  const rule = (key: "from" | "to"): unknown => ({ ...(maybe(0.7) ? { [key]: list(peer, 2) } : {}), ...(maybe(0.6) ? { ports: list(port, 2) } : {}) });
  const raw: RawNetworkPolicy[] = [];
  const count = 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < count; k++) {
    const spec: Record<string, unknown> = { podSelector: selector() };
    if (maybe(0.8)) spec["ingress"] = list(() => rule("from"), 2);
    if (maybe(0.5)) spec["egress"] = list(() => rule("to"), 2);
    if (maybe(0.4)) spec["policyTypes"] = pick([["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
    raw.push({ namespace: pick(nsNames), name: `np${k}`, spec });
  }
  // The schema gets a copy: what it parses must not change what the oracle reads.
  const policies = raw.map((p) => networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: p.name, namespace: p.namespace }, spec: structuredClone(p.spec) }));
  return { endpoints: eps, namespaces: nss, raw, policies, sctp: maybe() };
}
