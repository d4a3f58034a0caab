import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type LabelSelector, type NetworkPolicyObject, networkPolicyObject } from "../../src/config/k8sSchemas.js";
import { type ClusterNetworkPolicyObject, type GlobalNetworkPolicyObject, clusterNetworkPolicyObject, globalNetworkPolicyObject } from "../../src/config/policySchemas.js";
import type { KubeObject } from "../../src/config/resourceKinds.js";
import { parseManifests } from "../../src/ctl/manifests.js";
import { type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import { clusterNetworkPolicyToIr } from "../../src/policy/clusterNetworkPolicy.js";
import { GNP_PRIORITY_BASE, GNP_UNORDERED_PRIORITY, globalNetworkPolicyToIr } from "../../src/policy/globalNetworkPolicy.js";
import { type Peer, type PolicyIR, comparePolicies } from "../../src/policy/ir.js";
import { type PolicyModelInput, STAND_IN_PRIORITY, buildPolicyModel } from "../../src/policy/model.js";
import { packageRoot } from "../../src/sandbox/paths.js";

const fixture = parseManifests([{ name: "policy-kinds.yaml", text: readFileSync(join(packageRoot(), "test", "fixtures", "policy-kinds.yaml"), "utf8") }], { validate: true });
const byName = <T extends KubeObject>(kind: string, name: string): T => {
  const o = fixture.objects.find((x) => x.kind.kind === kind && x.name === name);
  assert.ok(o, `${kind} ${name}`);
  return o.object as T;
};

const cnp = (name: string, spec: unknown): ClusterNetworkPolicyObject => clusterNetworkPolicyObject.parse({ apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name }, spec });
const gnp = (name: string, spec: unknown): GlobalNetworkPolicyObject => globalNetworkPolicyObject.parse({ apiVersion: "sluice.dev/v1", kind: "GlobalNetworkPolicy", metadata: { name }, spec });
const np = (namespace: string, name: string, spec: unknown): NetworkPolicyObject => networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec });

/** The normalized form of `key In (values)`. */
const sel = (key: string, ...values: string[]): LabelSelector => ({ matchExpressions: [{ key, operator: "In", values }] });
const allNs = { kind: "selector", selector: {} } as const;
const nsSel = (key: string, ...values: string[]) => ({ kind: "selector" as const, selector: sel(key, ...values) });
const block = (cidr: string): Peer => ({ kind: "ipBlock", cidr, except: [] });

describe("ClusterNetworkPolicy -> IR", () => {
  test("the Admin example: tier, priority, subject, rule order and labels, Pass, namespaces / pods / nodes / networks peers, ports", () => {
    const ir = clusterNetworkPolicyToIr(byName("ClusterNetworkPolicy", "tenant-blue"));
    const otherTenants = { matchExpressions: [{ key: "tenant", operator: "Exists" }, { key: "tenant", operator: "NotIn", values: ["blue"] }] };
    assert.deepEqual(ir, {
      id: "cnp:tenant-blue",
      tier: "admin",
      priority: 10,
      subject: { namespaces: nsSel("tenant", "blue"), pods: {} },
      ingress: [
        {
          action: "pass",
          label: "pass-monitoring",
          peers: [{ kind: "pods", pods: { namespaces: nsSel("kubernetes.io/metadata.name", "monitoring"), pods: {} } }],
          ports: [
            { kind: "range", protocol: "TCP", from: 9090, to: 9090 },
            { kind: "named", protocol: "TCP", name: "metrics" },
            { kind: "named", protocol: "UDP", name: "metrics" },
            { kind: "named", protocol: "SCTP", name: "metrics" },
          ],
        },
        { action: "deny", label: "deny-other-tenants", peers: [{ kind: "pods", pods: { namespaces: { kind: "selector", selector: otherTenants }, pods: {} } }], ports: "all" },
      ],
      egress: [
        { action: "deny", label: "deny-to-other-tenants", peers: [{ kind: "pods", pods: { namespaces: { kind: "selector", selector: otherTenants }, pods: {} } }], ports: "all" },
        {
          action: "allow",
          label: "accept-dns-on-control-plane",
          peers: [{ kind: "nodes", nodes: sel("node-role.kubernetes.io/control-plane", "") }],
          ports: [
            { kind: "range", protocol: "UDP", from: 53, to: 53 },
            { kind: "range", protocol: "TCP", from: 53, to: 53 },
          ],
        },
        { action: "deny", label: "deny-blocked-ranges", peers: [block("203.0.113.0/24"), block("2001:db8:dead::/48")], ports: [{ kind: "range", protocol: "TCP", from: 1, to: 1024 }] },
      ],
      origin: { kind: "ClusterNetworkPolicy", name: "tenant-blue" },
    });
  });

  test("the Baseline example: baseline tier, pods subject, a namespaces peer of every namespace", () => {
    const ir = clusterNetworkPolicyToIr(byName("ClusterNetworkPolicy", "baseline-tenants"));
    assert.deepEqual([ir.tier, ir.priority, ir.subject], ["baseline", 50, { namespaces: { kind: "selector", selector: { matchExpressions: [{ key: "tenant", operator: "Exists" }] } }, pods: {} }]);
    assert.deepEqual(ir.ingress?.[0]?.peers, [{ kind: "pods", pods: { namespaces: nsSel("kubernetes.io/metadata.name", "monitoring"), pods: sel("app", "prometheus") } }]);
    assert.deepEqual(ir.ingress?.[1]?.peers, [{ kind: "pods", pods: { namespaces: allNs, pods: {} } }]);
    assert.deepEqual(ir.egress?.[0]?.peers, [block("198.51.100.0/24")]);
  });

  test("unnamed rules are `rule <n>`; a direction without rules is not affected; networks are canonical and de-duplicated; domainNames match nothing", () => {
    const ir = clusterNetworkPolicyToIr(
      cnp("x", {
        tier: "Admin",
        priority: 0,
        subject: { pods: { podSelector: { matchLabels: { app: "web" } } } },
        egress: [
          { action: "Deny", to: [{ networks: ["10.1.2.3/8", "fd00::1/8"] }, { pods: { podSelector: {} } }] },
          { action: "Accept", to: [{ domainNames: ["example.com"] }] },
          { action: "Deny", to: [{ networks: ["10.0.0.0/8", "10.9.9.9/8"] }] },
        ],
        ingress: [],
      }),
    );
    assert.deepEqual(ir.subject, { namespaces: allNs, pods: sel("app", "web") });
    assert.equal(ir.ingress, undefined);
    assert.deepEqual(ir.egress?.map((r) => [r.label, r.peers]), [
      ["rule 1", [block("10.0.0.0/8"), block("fd00::/8"), { kind: "pods", pods: { namespaces: allNs, pods: {} } }]],
      ["rule 2", []],
      ["rule 3", [block("10.0.0.0/8")]],
    ]);
    const model = buildPolicyModel(input({ objects: { ClusterNetworkPolicy: [cnp("x", { tier: "Admin", priority: 0, subject: { namespaces: {} }, egress: [{ name: "dns", action: "Accept", to: [{ domainNames: ["example.com"] }] }] })] } }));
    assert.deepEqual(model.warnings, ["ClusterNetworkPolicy x egress dns: domainNames peers are not supported by Sluice and match nothing (the rule accepts nothing through them)"]);
  });
});

describe("GlobalNetworkPolicy -> IR", () => {
  test("the example: order, subject, Log, ICMP, nets / notNets, selectors reaching pods and global sets, ports / notPorts, Pass", () => {
    const ir = globalNetworkPolicyToIr(byName("GlobalNetworkPolicy", "web-corp"));
    const everywhere = (key: string, value: string): Peer[] => [
      { kind: "pods", pods: { namespaces: allNs, pods: sel(key, value) } },
      { kind: "networkSets", sets: { namespaces: "global", selector: sel(key, value) } },
    ];
    assert.deepEqual(ir, {
      id: "gnp:web-corp",
      tier: "admin",
      priority: GNP_PRIORITY_BASE + 100,
      subject: { namespaces: nsSel("tenant", "blue"), pods: sel("app", "web") },
      ingress: [
        { action: "log", label: "log-ping", peers: [{ kind: "any" }], ports: [{ kind: "icmp", family: 4, type: 8, code: undefined }] },
        { action: "allow", label: "allow-ping-from-pods", peers: [block("10.244.0.0/16")], ports: [{ kind: "icmp", family: 4, type: 8, code: 0 }] },
        { action: "deny", label: "deny-ssh-from-scanners", peers: everywhere("role", "scanner"), ports: [{ kind: "range", protocol: "TCP", from: 22, to: 22 }] },
      ],
      egress: [
        {
          action: "allow",
          label: "allow-corp-https",
          peers: everywhere("corp", "true"),
          ports: [
            { kind: "range", protocol: "TCP", from: 443, to: 443 },
            { kind: "range", protocol: "TCP", from: 8000, to: 8080 },
          ],
        },
        { action: "deny", label: "deny-private-except-cluster", peers: [block("10.0.0.0/8"), block("172.16.0.0/12")], notPeers: [block("10.244.0.0/16")], ports: [{ kind: "protocol", protocol: "TCP" }], notPorts: [{ kind: "range", protocol: "TCP", from: 53, to: 53 }] },
        { action: "pass", label: "pass-rest", peers: [{ kind: "any" }], ports: "all" },
      ],
      origin: { kind: "GlobalNetworkPolicy", name: "web-corp" },
    });
  });

  test("selector AND namespaceSelector AND nets: allOf peers over pods and namespaced sets; notNets", () => {
    const ir = globalNetworkPolicyToIr(gnp("g", { ingress: [{ action: "Allow", source: { selector: { matchLabels: { app: "db" } }, namespaceSelector: { matchLabels: { team: "a" } }, nets: ["10.0.0.0/8", "fd00::/8"], notNets: ["10.1.0.0/16"] } }] }));
    const ns = nsSel("team", "a");
    const pods: Peer = { kind: "pods", pods: { namespaces: ns, pods: sel("app", "db") } };
    const sets: Peer = { kind: "networkSets", sets: { namespaces: ns, selector: sel("app", "db") } };
    assert.deepEqual(ir.ingress?.[0]?.peers, [
      { kind: "allOf", peers: [pods, block("10.0.0.0/8")] },
      { kind: "allOf", peers: [pods, block("fd00::/8")] },
      { kind: "allOf", peers: [sets, block("10.0.0.0/8")] },
      { kind: "allOf", peers: [sets, block("fd00::/8")] },
    ]);
    assert.deepEqual(ir.ingress?.[0]?.notPeers, [block("10.1.0.0/16")]);
    const onlyNs = globalNetworkPolicyToIr(gnp("g", { egress: [{ action: "Deny", destination: { namespaceSelector: {} } }] }));
    assert.deepEqual(onlyNs.egress?.[0]?.peers, [
      { kind: "pods", pods: { namespaces: allNs, pods: {} } },
      { kind: "networkSets", sets: { namespaces: allNs, selector: {} } },
    ]);
  });

  test("the selected pod's own side: an ingress destination and an egress source become `self`; source ports become srcPorts", () => {
    const ir = globalNetworkPolicyToIr(
      gnp("g", {
        types: ["Ingress", "Egress"],
        ingress: [{ action: "Deny", protocol: "TCP", source: { ports: ["1:1023"], notPorts: [53] }, destination: { selector: { matchLabels: { role: "admin" } }, ports: ["http"] } }],
        egress: [{ action: "Allow", protocol: "UDP", source: { notNets: ["10.244.9.0/24"] } }],
      }),
    );
    const rule = ir.ingress?.[0];
    assert.deepEqual(rule?.peers, [{ kind: "any" }]);
    assert.deepEqual(rule?.ports, [{ kind: "named", protocol: "TCP", name: "http" }]);
    assert.deepEqual(rule?.srcPorts, [{ kind: "range", protocol: "TCP", from: 1, to: 1023 }]);
    assert.deepEqual(rule?.notSrcPorts, [{ kind: "range", protocol: "TCP", from: 53, to: 53 }]);
    assert.deepEqual(rule?.self, {
      peers: [
        { kind: "pods", pods: { namespaces: allNs, pods: sel("role", "admin") } },
        { kind: "networkSets", sets: { namespaces: "global", selector: sel("role", "admin") } },
      ],
      notPeers: [],
    });
    assert.deepEqual(ir.egress?.[0], { action: "allow", label: "rule 1", peers: [{ kind: "any" }], ports: [{ kind: "protocol", protocol: "UDP" }], self: { peers: [{ kind: "any" }], notPeers: [block("10.244.9.0/24")] } });
  });

  test("ICMPv6, types that leave a direction out, order: absent sorts after every ordered GNP and every CNP", () => {
    const v6 = globalNetworkPolicyToIr(gnp("v6", { types: ["Egress"], ingress: [{ action: "Allow" }], egress: [{ action: "Allow", protocol: "ICMPv6" }] }));
    assert.equal(v6.ingress, undefined);
    assert.deepEqual(v6.egress?.[0]?.ports, [{ kind: "icmp", family: 6, type: undefined, code: undefined }]);
    assert.equal(v6.priority, GNP_UNORDERED_PRIORITY);
    const policies = [v6, globalNetworkPolicyToIr(gnp("late", { order: 1_000_000_000 })), globalNetworkPolicyToIr(gnp("first", { order: 0 })), clusterNetworkPolicyToIr(cnp("c", { tier: "Admin", priority: 1000, subject: { namespaces: {} } })), clusterNetworkPolicyToIr(cnp("b", { tier: "Baseline", priority: 0, subject: { namespaces: {} } }))];
    assert.deepEqual(policies.sort(comparePolicies).map((p) => p.id), ["cnp:c", "gnp:first", "gnp:late", "gnp:v6", "cnp:b"]);
  });
});

// ---- buildPolicyModel ----

const pod = (namespace: string, name: string, ip: string, labels: Record<string, string> = {}): PodEndpoint => ({ namespace, pod: name, node: "n1", hostIface: hostIfaceName(namespace, name), ips: [ip], labels, ports: [] });
const NAMESPACES: NamespaceInfo[] = [
  { name: "blue", labels: { tenant: "blue" } },
  { name: "red", labels: { tenant: "red" } },
  { name: "ops", labels: {} },
];
const PODS = [pod("blue", "web", "10.244.1.2", { app: "web" }), pod("red", "web", "10.244.1.3", { app: "web" }), pod("ops", "mon", "10.244.2.2", { app: "mon" })];

function input(o: Partial<PolicyModelInput> = {}): PolicyModelInput {
  return { endpoints: PODS, namespaces: NAMESPACES, networkPolicies: [], objects: {}, ...o };
}

describe("buildPolicyModel", () => {
  test("nodes (InternalIP / ExternalIP only, canonical) and network sets (canonical, de-duplicated, sorted) from the objects", () => {
    const node = (name: string, addresses: { type: string; address: string }[], labels?: Record<string, string>): KubeObject => ({ apiVersion: "v1", kind: "Node", metadata: { name, labels }, spec: {}, status: { addresses } }) as KubeObject;
    const model = buildPolicyModel(
      input({
        objects: {
          Node: [node("n1", [{ type: "InternalIP", address: "192.168.50.11" }, { type: "Hostname", address: "n1" }, { type: "ExternalIP", address: "2001:DB8::0:1" }, { type: "InternalIP", address: "not-an-ip" }], { zone: "a" }), node("n2", [])],
          NetworkSet: [byName("NetworkSet", "partners")],
          GlobalNetworkSet: [byName("GlobalNetworkSet", "corporate"), { apiVersion: "sluice.dev/v1", kind: "GlobalNetworkSet", metadata: { name: "messy" }, spec: { nets: ["10.1.2.3/8", "10.0.0.0/8", "192.168.0.0/16"] } } as KubeObject],
        },
      }),
    );
    assert.deepEqual(model.nodes, [
      { name: "n1", labels: { zone: "a" }, addresses: ["192.168.50.11", "2001:db8::1"] },
      { name: "n2", labels: {}, addresses: [] },
    ]);
    assert.deepEqual(model.networkSets, [
      { namespace: "blue", name: "partners", labels: { partner: "true" }, nets: ["198.51.100.0/24", "2001:db8:100::/48"] },
      { namespace: undefined, name: "corporate", labels: { corp: "true" }, nets: ["10.0.0.0/8", "172.16.0.0/12"] },
      { namespace: undefined, name: "messy", labels: {}, nets: ["10.0.0.0/8", "192.168.0.0/16"] },
    ]);
    assert.deepEqual(model.warnings, []);
  });

  test("policies of every kind, each with its origin", () => {
    const model = buildPolicyModel(input({ networkPolicies: [np("blue", "deny", { podSelector: {} })], objects: { ClusterNetworkPolicy: [byName("ClusterNetworkPolicy", "tenant-blue"), byName("ClusterNetworkPolicy", "baseline-tenants")], GlobalNetworkPolicy: [byName("GlobalNetworkPolicy", "web-corp")] } }));
    assert.deepEqual(
      [...model.policies].sort(comparePolicies).map((p) => `${p.tier} ${p.priority} ${p.id} ${p.origin?.kind}`),
      ["admin 10 cnp:tenant-blue ClusterNetworkPolicy", `admin ${GNP_PRIORITY_BASE + 100} gnp:web-corp GlobalNetworkPolicy`, "namespace 0 blue/deny NetworkPolicy", "baseline 50 cnp:baseline-tenants ClusterNetworkPolicy"],
    );
    assert.equal(model.endpoints, PODS);
  });

  test("refused objects: a NetworkPolicy isolates its namespace; a cluster-wide policy denies every pod both ways first; anything else warns", () => {
    const model = buildPolicyModel(
      input({
        refused: [
          { kind: "GlobalNetworkPolicy", name: "g", reason: "spec.order: must be between 0 and 1000000000" },
          { kind: "NetworkPolicy", namespace: "red", name: "broken", reason: "not JSON: x" },
          { kind: "ClusterNetworkPolicy", name: "c", reason: "spec.priority: is required (number)" },
          { kind: "NetworkSet", namespace: "blue", name: "s", reason: "spec.nets[0]: must be a CIDR" },
          { kind: "Pod", namespace: "blue", name: "web", reason: "metadata.labels: bad" },
        ],
      }),
    );
    const denyAll = [{ action: "deny", label: "stand-in: deny all", peers: [{ kind: "any" }], ports: "all" }];
    const everyPod = { namespaces: allNs, pods: {} };
    assert.deepEqual([...model.policies].sort(comparePolicies), [
      { id: "cnp:c", tier: "admin", priority: STAND_IN_PRIORITY, subject: everyPod, ingress: denyAll, egress: denyAll, origin: { kind: "StandIn", namespace: undefined, name: "c" } },
      { id: "gnp:g", tier: "admin", priority: STAND_IN_PRIORITY, subject: everyPod, ingress: denyAll, egress: denyAll, origin: { kind: "StandIn", namespace: undefined, name: "g" } },
      { id: "red/broken", tier: "namespace", priority: 0, subject: { namespaces: { kind: "name", name: "red" }, pods: {} }, ingress: [], egress: [], origin: { kind: "StandIn", namespace: "red", name: "broken" } },
    ] as PolicyIR[]);
    assert.deepEqual(model.warnings, [
      "ClusterNetworkPolicy c cannot be read (spec.priority: is required (number)); every pod is denied all traffic both ways until it is fixed or deleted",
      "GlobalNetworkPolicy g cannot be read (spec.order: must be between 0 and 1000000000); every pod is denied all traffic both ways until it is fixed or deleted",
      "NetworkPolicy red/broken cannot be read (not JSON: x); every pod of namespace red is isolated both ways until it is fixed or deleted",
      "NetworkSet blue/s cannot be read (spec.nets[0]: must be a CIDR); what it would add to policy peers is missing until it is fixed",
      "Pod blue/web cannot be read (metadata.labels: bad); its pod's labels are unknown: it matches no selector and is isolated both ways until it is fixed",
    ]);
  });

  test("Admin CNPs with the same priority warn when they select a common pod (tie-break by name); disjoint ones, Baseline ones and other priorities do not", () => {
    const admin = (name: string, priority: number, subject: unknown, tier = "Admin") => cnp(name, { tier, priority, subject, ingress: [{ action: "Deny", from: [{ namespaces: {} }] }] });
    const tenant = (t: string) => ({ namespaces: { matchLabels: { tenant: t } } });
    const webPods = { pods: { podSelector: { matchLabels: { app: "web" } } } };
    const model = buildPolicyModel(
      input({
        objects: {
          ClusterNetworkPolicy: [
            admin("zeta", 5, tenant("blue")),
            admin("alpha", 5, webPods),
            admin("red-only", 5, tenant("red")),
            admin("ops", 5, { namespaces: { matchLabels: { "kubernetes.io/metadata.name": "ops" } } }),
            admin("other-priority", 6, tenant("blue")),
            admin("base-1", 5, tenant("blue"), "Baseline"),
            admin("base-2", 5, tenant("blue"), "Baseline"),
            admin("nobody-1", 7, tenant("green")),
            admin("nobody-2", 7, tenant("green")),
          ],
        },
      }),
    );
    assert.deepEqual(model.warnings, ["Admin ClusterNetworkPolicies with the same priority 5 select common pods: alpha and red-only, alpha and zeta; Sluice evaluates them by name (alpha, ops, red-only, zeta); give them distinct priorities if the order matters"]);
  });

  test("a GlobalNetworkPolicy direction without rules does nothing in the Admin tier: a warning says so", () => {
    const model = buildPolicyModel(input({ objects: { GlobalNetworkPolicy: [gnp("quiet", { types: ["Ingress"] })] } }));
    assert.match(model.warnings.join("\n"), /^GlobalNetworkPolicy quiet applies to Ingress but has no ingress rules/);
  });
});
