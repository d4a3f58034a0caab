import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject, type NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import type { ContainerPort, NamespaceInfo, PodEndpoint, Protocol } from "../../src/model/endpoint.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { EndpointIndex } from "../../src/policy/endpointIndex.js";
import { PolicyEvaluator } from "../../src/policy/evaluate.js";
import { comparePolicies, podSetKey, type PolicyIR } from "../../src/policy/ir.js";

function np(namespace: string, name: string, spec: unknown): NetworkPolicyObject {
  return networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec });
}

function pod(namespace: string, name: string, ip: string, labels: Record<string, string> = {}, ports: ContainerPort[] = [], node = "n1"): PodEndpoint {
  return { namespace, pod: name, node, hostIface: hostIfaceName(namespace, name), ips: ip.split(" "), labels, ports };
}

describe("NetworkPolicy -> IR: directions", () => {
  test("only a podSelector: Ingress applies with no rules (deny all ingress), egress untouched", () => {
    const ir = networkPolicyToIr(np("prod", "deny", { podSelector: {} }));
    assert.deepEqual(ir, { id: "prod/deny", tier: "namespace", priority: 0, subject: { namespaces: { kind: "name", name: "prod" }, pods: {} }, ingress: [], egress: undefined, origin: { kind: "NetworkPolicy", namespace: "prod", name: "deny" } });
  });

  test("egress rules without policyTypes: both directions apply", () => {
    const ir = networkPolicyToIr(np("prod", "p", { podSelector: {}, egress: [{}] }));
    assert.deepEqual(ir.ingress, []);
    assert.deepEqual(ir.egress, [{ action: "allow", peers: [{ kind: "any" }], ports: "all" }]);
  });

  test("policyTypes wins: [Egress] ignores ingress rules; [Ingress, Egress] with no rules denies both", () => {
    const e = networkPolicyToIr(np("prod", "p", { podSelector: {}, policyTypes: ["Egress"], ingress: [{}] }));
    assert.equal(e.ingress, undefined);
    assert.deepEqual(e.egress, []);
    const both = networkPolicyToIr(np("prod", "p", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }));
    assert.deepEqual([both.ingress, both.egress], [[], []]);
  });

  test("ingress: [] denies all; ingress: [{}] allows all; from/ports absent or [] mean everything", () => {
    assert.deepEqual(networkPolicyToIr(np("a", "p", { podSelector: {}, ingress: [] })).ingress, []);
    const all = { action: "allow", peers: [{ kind: "any" }], ports: "all" };
    assert.deepEqual(networkPolicyToIr(np("a", "p", { podSelector: {}, ingress: [{}] })).ingress, [all]);
    assert.deepEqual(networkPolicyToIr(np("a", "p", { podSelector: {}, ingress: [{ from: [], ports: [] }] })).ingress, [all]);
  });

  test("the subject is the policy's namespace and its normalized podSelector", () => {
    const ir = networkPolicyToIr(np("prod", "p", { podSelector: { matchLabels: { app: "web" } } }));
    assert.deepEqual(ir.subject, { namespaces: { kind: "name", name: "prod" }, pods: { matchExpressions: [{ key: "app", operator: "In", values: ["web"] }] } });
    assert.equal(podSetKey(ir.subject), "ns:prod|pods:app=web");
  });

  test("evaluation order: by tier, then priority, then id", () => {
    const mk = (id: string, tier: PolicyIR["tier"], priority = 0): PolicyIR => ({ id, tier, priority, subject: { namespaces: { kind: "name", name: "x" }, pods: {} }, ingress: [], egress: undefined });
    const sorted = [mk("b/x", "namespace"), mk("z", "baseline"), mk("a/x", "namespace"), mk("k", "admin", 5), mk("j", "admin", 10)].sort(comparePolicies);
    assert.deepEqual(sorted.map((p) => p.id), ["k", "j", "a/x", "b/x", "z"]);
  });
});

describe("NetworkPolicy -> IR: peers and ports", () => {
  const from = (peer: unknown) => networkPolicyToIr(np("prod", "p", { podSelector: {}, ingress: [{ from: [peer] }] })).ingress?.[0]?.peers[0];

  test("podSelector alone: those pods of the policy's own namespace", () => {
    assert.deepEqual(from({ podSelector: { matchLabels: { app: "db" } } }), { kind: "pods", pods: { namespaces: { kind: "name", name: "prod" }, pods: { matchExpressions: [{ key: "app", operator: "In", values: ["db"] }] } } });
    assert.deepEqual(from({ podSelector: {} }), { kind: "pods", pods: { namespaces: { kind: "name", name: "prod" }, pods: {} } });
  });

  test("namespaceSelector alone: every pod of the matching namespaces ({} = all namespaces)", () => {
    assert.deepEqual(from({ namespaceSelector: {} }), { kind: "pods", pods: { namespaces: { kind: "selector", selector: {} }, pods: {} } });
    assert.deepEqual(from({ namespaceSelector: { matchLabels: { team: "a" } } }), { kind: "pods", pods: { namespaces: { kind: "selector", selector: { matchExpressions: [{ key: "team", operator: "In", values: ["a"] }] } }, pods: {} } });
  });

  test("namespaceSelector and podSelector in one peer: both (AND)", () => {
    const p = from({ namespaceSelector: { matchLabels: { team: "a" } }, podSelector: { matchLabels: { app: "x" } } });
    assert.ok(p?.kind === "pods");
    assert.equal(podSetKey(p.pods), "nssel:team=a|pods:app=x");
  });

  test("ipBlock: canonical CIDRs, except sorted and de-duplicated", () => {
    assert.deepEqual(from({ ipBlock: { cidr: "10.0.0.7/8", except: ["10.9.0.0/16", "10.1.0.0/16", "10.9.0.0/16"] } }), { kind: "ipBlock", cidr: "10.0.0.0/8", except: ["10.1.0.0/16", "10.9.0.0/16"] });
    assert.deepEqual(from({ ipBlock: { cidr: "FD00:0::/48" } }), { kind: "ipBlock", cidr: "fd00::/48", except: [] });
  });

  test("ports: protocol defaults to TCP; number, endPort range, name, protocol alone", () => {
    const ports = networkPolicyToIr(np("a", "p", { podSelector: {}, ingress: [{ ports: [{ port: 80 }, { protocol: "UDP", port: 53 }, { port: 8000, endPort: 8080 }, { port: "http" }, { protocol: "SCTP", port: "diameter" }, { protocol: "UDP" }, { protocol: "SCTP", port: 3868 }] }] })).ingress?.[0]?.ports;
    assert.deepEqual(ports, [
      { kind: "range", protocol: "TCP", from: 80, to: 80 },
      { kind: "range", protocol: "UDP", from: 53, to: 53 },
      { kind: "range", protocol: "TCP", from: 8000, to: 8080 },
      { kind: "named", protocol: "TCP", name: "http" },
      { kind: "named", protocol: "SCTP", name: "diameter" },
      { kind: "protocol", protocol: "UDP" },
      { kind: "range", protocol: "SCTP", from: 3868, to: 3868 },
    ]);
  });
});

// ---- semantics: the IR's reference meaning over a small cluster ----

const namespaces: NamespaceInfo[] = [
  { name: "prod", labels: { team: "a", env: "prod" } },
  { name: "dev", labels: { team: "a", env: "dev" } },
  { name: "other", labels: { team: "b" } },
];
const http = (n: number, protocol: Protocol = "TCP"): ContainerPort => ({ name: "http", containerPort: n, protocol });
const pods = {
  web: pod("prod", "web", "10.0.1.1 fd00::1:1", { app: "web" }, [http(8080)]),
  web2: pod("prod", "web2", "10.0.1.2", { app: "web" }, [http(9090)]),
  db: pod("prod", "db", "10.0.1.3", { app: "db" }, [{ name: "pg", containerPort: 5432, protocol: "TCP" }]),
  devWeb: pod("dev", "web", "10.0.2.1", { app: "web" }, [http(8080)]),
  devDb: pod("dev", "db", "10.0.2.3", { app: "db" }),
  otherDb: pod("other", "db", "10.0.3.3", { app: "db" }),
  // a pod in a namespace nobody wrote a Namespace object for
  stray: pod("stray", "x", "10.0.4.4", { app: "db" }),
};
const EXTERNAL = "192.0.2.9";

function evaluator(nps: NetworkPolicyObject[], sctpSupported = false): PolicyEvaluator {
  return new PolicyEvaluator(nps.map(networkPolicyToIr), new EndpointIndex(Object.values(pods), namespaces), { sctpSupported });
}
const ip = (p: PodEndpoint): string => p.ips[0] as string;
function allowed(ev: PolicyEvaluator, src: PodEndpoint | string, dst: PodEndpoint | string, port = 80, protocol: Protocol = "TCP"): boolean {
  return ev.evaluate({ src: typeof src === "string" ? src : ip(src), dst: typeof dst === "string" ? dst : ip(dst), protocol, port }).allowed;
}

describe("IR semantics: isolation", () => {
  test("no policy: everything allowed", () => {
    const ev = evaluator([]);
    assert.equal(allowed(ev, pods.db, pods.web), true);
    assert.equal(allowed(ev, EXTERNAL, pods.web), true);
  });

  test("a pod selected for ingress is isolated for ingress only; unselected pods stay open", () => {
    const ev = evaluator([np("prod", "deny", { podSelector: { matchLabels: { app: "web" } } })]);
    assert.equal(allowed(ev, pods.db, pods.web), false);
    assert.equal(allowed(ev, pods.db, pods.web2), false);
    assert.equal(allowed(ev, pods.web, pods.db), true, "egress of web and ingress of db are not isolated");
    assert.equal(allowed(ev, pods.web, pods.devWeb), true, "the policy only selects pods of its own namespace");
  });

  test("union: every policy selecting a pod adds what it allows; none takes anything away", () => {
    const ev = evaluator([
      np("prod", "from-db", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: "db" } } }] }] }),
      np("prod", "from-dev", { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }] }] }),
      np("prod", "deny-all", { podSelector: {} }),
    ]);
    assert.equal(allowed(ev, pods.db, pods.web), true);
    assert.equal(allowed(ev, pods.devDb, pods.web), true);
    assert.equal(allowed(ev, pods.otherDb, pods.web), false);
    assert.equal(allowed(ev, pods.db, pods.db), true, "a pod cannot block access to itself (db is otherwise isolated by from-dev and deny-all)");
    assert.equal(allowed(ev, pods.devDb, pods.db), true);
    const v = ev.evaluate({ src: ip(pods.db), dst: ip(pods.web), protocol: "TCP", port: 1 });
    assert.deepEqual(v.ingress.isolatedBy, ["prod/deny-all", "prod/from-db", "prod/from-dev"]);
    assert.equal(v.ingress.allowedBy, "prod/from-db");
  });

  test("egress isolation: both ends must allow", () => {
    const ev = evaluator([
      np("prod", "egress-to-db", { podSelector: { matchLabels: { app: "web" } }, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: { matchLabels: { app: "db" } } }] }] }),
      np("prod", "db-deny", { podSelector: { matchLabels: { app: "db" } } }),
    ]);
    assert.equal(allowed(ev, pods.web, pods.db), false, "web may send, db refuses");
    assert.equal(allowed(ev, pods.web, pods.devDb), false, "podSelector alone: own namespace only");
    assert.equal(allowed(ev, pods.web, EXTERNAL), false);
    assert.equal(allowed(ev, pods.db, pods.web), true, "db's egress is not isolated, web's ingress neither");
    const ev2 = evaluator([np("prod", "egress-none", { podSelector: {}, policyTypes: ["Egress"] })]);
    assert.equal(allowed(ev2, pods.web, EXTERNAL), false);
    assert.equal(allowed(ev2, EXTERNAL, pods.web), true);
  });
});

describe("IR semantics: peers", () => {
  const ingressFrom = (peers: unknown[], ports?: unknown[]) => evaluator([np("prod", "p", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: peers, ...(ports ? { ports } : {}) }] })]);

  test("podSelector alone: matching pods of the policy's namespace only", () => {
    const ev = ingressFrom([{ podSelector: { matchLabels: { app: "db" } } }]);
    assert.equal(allowed(ev, pods.db, pods.web), true);
    assert.equal(allowed(ev, pods.devDb, pods.web), false);
    assert.equal(allowed(ev, pods.web2, pods.web), false);
    assert.equal(allowed(ev, EXTERNAL, pods.web), false);
  });

  test("podSelector {}: every pod of the policy's namespace", () => {
    const ev = ingressFrom([{ podSelector: {} }]);
    assert.equal(allowed(ev, pods.web2, pods.web), true);
    assert.equal(allowed(ev, pods.devWeb, pods.web), false);
  });

  test("namespaceSelector {}: every pod of every namespace (also namespaces without an object), but no non-pods", () => {
    const ev = ingressFrom([{ namespaceSelector: {} }]);
    for (const p of [pods.db, pods.devDb, pods.otherDb, pods.stray]) assert.equal(allowed(ev, p, pods.web), true, p.pod);
    assert.equal(allowed(ev, EXTERNAL, pods.web), false);
  });

  test("namespaceSelector alone; by the automatic kubernetes.io/metadata.name label", () => {
    const ev = ingressFrom([{ namespaceSelector: { matchLabels: { team: "a" } } }]);
    assert.equal(allowed(ev, pods.devDb, pods.web), true);
    assert.equal(allowed(ev, pods.otherDb, pods.web), false);
    const byName = ingressFrom([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "stray" } } }]);
    assert.equal(allowed(byName, pods.stray, pods.web), true);
    assert.equal(allowed(byName, pods.otherDb, pods.web), false);
  });

  test("namespaceSelector + podSelector in one peer: AND; in two peers: OR", () => {
    const and = ingressFrom([{ namespaceSelector: { matchLabels: { env: "dev" } }, podSelector: { matchLabels: { app: "db" } } }]);
    assert.equal(allowed(and, pods.devDb, pods.web), true);
    assert.equal(allowed(and, pods.devWeb, pods.web), false);
    assert.equal(allowed(and, pods.db, pods.web), false);
    const or = ingressFrom([{ namespaceSelector: { matchLabels: { env: "dev" } } }, { podSelector: { matchLabels: { app: "db" } } }]);
    assert.equal(allowed(or, pods.devWeb, pods.web), true);
    assert.equal(allowed(or, pods.db, pods.web), true);
    assert.equal(allowed(or, pods.otherDb, pods.web), false);
  });

  test("ipBlock with except: matches pod and non-pod addresses; except carves out; the other family never matches", () => {
    const ev = ingressFrom([{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.2.0/24"] } }, { ipBlock: { cidr: "192.0.2.0/24" } }]);
    assert.equal(allowed(ev, pods.db, pods.web), true);
    assert.equal(allowed(ev, pods.otherDb, pods.web), true);
    assert.equal(allowed(ev, pods.devDb, pods.web), false);
    assert.equal(allowed(ev, EXTERNAL, pods.web), true);
    assert.equal(allowed(ev, "198.51.100.1", pods.web), false);
    const v6 = ingressFrom([{ ipBlock: { cidr: "fd00::/16" } }]);
    assert.equal(allowed(v6, pods.db, pods.web), false);
    assert.equal(allowed(v6, "fd00::9", "fd00::1:1"), true);
  });
});

describe("IR semantics: ports", () => {
  const web = { matchLabels: { app: "web" } };

  test("numbers, endPort ranges and protocols: a UDP rule never opens TCP", () => {
    const ev = evaluator([np("prod", "p", { podSelector: web, ingress: [{ ports: [{ port: 80 }, { port: 8000, endPort: 8010 }, { protocol: "UDP", port: 53 }] }] })]);
    assert.equal(allowed(ev, pods.db, pods.web, 80), true);
    assert.equal(allowed(ev, pods.db, pods.web, 81), false);
    assert.equal(allowed(ev, pods.db, pods.web, 8000), true);
    assert.equal(allowed(ev, pods.db, pods.web, 8010), true);
    assert.equal(allowed(ev, pods.db, pods.web, 8011), false);
    assert.equal(allowed(ev, pods.db, pods.web, 53, "UDP"), true);
    assert.equal(allowed(ev, pods.db, pods.web, 53, "TCP"), false);
    assert.equal(allowed(ev, pods.db, pods.web, 80, "UDP"), false);
  });

  test("a protocol without a port opens every port of that protocol only", () => {
    const ev = evaluator([np("prod", "p", { podSelector: web, ingress: [{ ports: [{ protocol: "UDP" }] }] })]);
    assert.equal(allowed(ev, pods.db, pods.web, 9999, "UDP"), true);
    assert.equal(allowed(ev, pods.db, pods.web, 9999, "TCP"), false);
  });

  test("ingress named port: resolved per selected (destination) pod, protocol must match", () => {
    const ev = evaluator([np("prod", "p", { podSelector: web, ingress: [{ ports: [{ port: "http" }] }] })]);
    assert.equal(allowed(ev, pods.db, pods.web, 8080), true);
    assert.equal(allowed(ev, pods.db, pods.web, 9090), false);
    assert.equal(allowed(ev, pods.db, pods.web2, 9090), true);
    assert.equal(allowed(ev, pods.db, pods.web2, 8080), false);
    const udp = evaluator([np("prod", "p", { podSelector: web, ingress: [{ ports: [{ port: "http", protocol: "UDP" }] }] })]);
    assert.equal(allowed(udp, pods.db, pods.web, 8080, "TCP"), false);
    assert.equal(allowed(udp, pods.db, pods.web, 8080, "UDP"), false, "web's http port is TCP");
  });

  test("egress named port: resolved against the peer pod; never matches a non-pod destination", () => {
    const toPods = evaluator([np("prod", "p", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"], egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: "http" }] }] })]);
    assert.equal(allowed(toPods, pods.db, pods.web, 8080), true);
    assert.equal(allowed(toPods, pods.db, pods.web2, 8080), false);
    assert.equal(allowed(toPods, pods.db, pods.devWeb, 8080), true);
    const toBlock = evaluator([np("prod", "p", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ port: "http" }] }] })]);
    assert.equal(allowed(toBlock, pods.db, pods.web, 8080), true);
    assert.equal(allowed(toBlock, pods.db, EXTERNAL, 8080), false);
    const toAny = evaluator([np("prod", "p", { podSelector: { matchLabels: { app: "db" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] })]);
    assert.equal(allowed(toAny, pods.db, pods.web2, 9090), true);
    assert.equal(allowed(toAny, pods.db, EXTERNAL, 8080), false);
  });

  test("SCTP without kernel support opens nothing and keeps the pod isolated", () => {
    const nps = [np("prod", "p", { podSelector: web, ingress: [{ ports: [{ protocol: "SCTP", port: 3868 }] }] })];
    const ev = evaluator(nps, false);
    for (const proto of ["SCTP", "TCP", "UDP"] as const) assert.equal(allowed(ev, pods.db, pods.web, 3868, proto), false, proto);
    const sctp = evaluator(nps, true);
    assert.equal(allowed(sctp, pods.db, pods.web, 3868, "SCTP"), true);
    assert.equal(allowed(sctp, pods.db, pods.web, 3868, "TCP"), false);
  });
});
