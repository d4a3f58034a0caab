/**
 * End-to-end scenarios for the cluster-wide tiers: ClusterNetworkPolicy
 * (policy.networking.k8s.io/v1alpha2, tiers Admin and Baseline), Sluice's
 * GlobalNetworkPolicy, NetworkSet and GlobalNetworkSet (sluice.dev/v1), together with
 * NetworkPolicy. Data only, with the conventions of scenarios.ts (same model x/y/z ×
 * a/b/c, same grids, same placeholders, same step order, SETTLE_MS then one probe).
 * Every expected grid is written by hand from the documents' meaning; the oracle
 * (oracle.ts) re-derives them as a second opinion in expectations.test.ts.
 *
 * The meaning, per direction of a pod (egress of the source, ingress of the destination):
 * Admin tier (ClusterNetworkPolicy Admin by priority, then GlobalNetworkPolicy by order;
 * rules in order; Accept/Allow and Deny decide, Pass leaves the tier, Log goes on), then
 * NetworkPolicy (isolates and allows), then, only where NetworkPolicy did not isolate, the
 * Baseline tier; default allow. A pod always reaches itself by its own address (it never
 * leaves the pod). NetworkPolicy does not judge a pod's traffic to its own node (the
 * Kubernetes docs' exception); the Admin and Baseline tiers do (the ClusterNetworkPolicy
 * API has no such exception), and a node always reaches its own pods.
 *
 * Outside the pod network: `hosts` probes go from pods to the external host ext-1
 * (203.0.113.11 in 203.0.113.0/24, through the node's masquerade; policy judges the pod's
 * own address) or to a node's underlay address (node-2), where a host-network server
 * answers on the pods' ports: from a pod on that node (its own node, through INPUT there)
 * or on another one (through FORWARD on its own node).
 */
import { ALL, ONLY_SELF, type Scenario, type Step, X_CLOSED, X_SENDS_NOTHING, dedent, doc, nodesFrom, np } from "./scenarios.js";

export const CLUSTER_BULLETS = {
  "tenants": "namespaces labelled by tenant; an Admin Deny across tenants; relabelling a namespace moves it to another tenant",
  "admin-deny": "an Admin Deny wins over a NetworkPolicy that allows",
  "admin-accept": "an Admin Accept wins over a NetworkPolicy that isolates",
  "admin-pass": "an Admin Pass hands the decision to NetworkPolicy: allowed or denied there, default allow without one",
  "baseline-default-deny": "a Baseline default-deny applies only where no NetworkPolicy isolates, direction by direction",
  "cnp-subject-pods": "ClusterNetworkPolicy subject.pods (namespaceSelector and podSelector) and pods peers",
  "cnp-priority": "changing an Admin priority flips the outcome",
  "cnp-rule-order": "swapping the rules inside a policy flips the outcome",
  "gnp-order": "GlobalNetworkPolicy order decides between GlobalNetworkPolicies",
  "cnp-before-gnp": "every ClusterNetworkPolicy of the Admin tier comes before every GlobalNetworkPolicy",
  "gnp-log": "Log records and goes on: the traffic is still allowed or denied by later rules",
  "cnp-ports": "ClusterNetworkPolicy protocols: a port number, a range, a named port",
  "gnp-ports": "GlobalNetworkPolicy protocol and destination ports",
  "icmp": "ICMP echo: opened by a protocol ICMP rule, closed like any other traffic",
  "sctp": "an SCTP-only rule opens neither TCP nor UDP and the pod stays isolated",
  "networks": "ClusterNetworkPolicy networks peers: the external host is reachable only when allowed",
  "network-sets": "GlobalNetworkSet and NetworkSet selected by a GlobalNetworkPolicy, for the external range",
  "gnp-nets": "GlobalNetworkPolicy nets and notNets",
  "nodes-peers": "ClusterNetworkPolicy nodes peers match node addresses, the pod's own node's too",
  "own-node":
    "a pod's traffic to its own node's host-network server: the Admin and Baseline tiers judge it as traffic to any other node (nodes, networks, nets), NetworkPolicy never does (it neither blocks nor opens it)",
  "egress": "egress rules of the Admin and Baseline tiers",
  "update-in-place": "an object updated in place is in force within 600 ms on every node",
  "delete": "deleting an object is in force within 600 ms on every node",
} as const;
export type ClusterBullet = keyof typeof CLUSTER_BULLETS;

// ---- documents ----

/** A ClusterNetworkPolicy; `spec` is the YAML below tier and priority. */
function cnp(name: string, tier: "Admin" | "Baseline", priority: number, spec: string): string {
  return doc("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", `{name: ${name}}`, `tier: ${tier}\npriority: ${priority}\n${dedent(spec)}`);
}

function gnp(name: string, spec: string): string {
  return doc("sluice.dev/v1", "GlobalNetworkPolicy", `{name: ${name}}`, spec);
}

/** An Admin ClusterNetworkPolicy for the pods of x: one ingress rule from the pods of the namespaces `from` (a label selector in YAML flow form). */
function adminToX(name: string, priority: number, action: "Accept" | "Deny" | "Pass", from: string): string {
  return cnp(name, "Admin", priority, `
    subject:
      namespaces: {matchLabels: {ns: x}}
    ingress:
    - action: ${action}
      from:
      - namespaces: ${from}
  `);
}

/** A GlobalNetworkPolicy for the pods of x: one ingress rule from the pods (and network sets) of namespace `from`. */
function gnpToX(name: string, order: number, action: "Allow" | "Deny", from: string): string {
  return gnp(name, `
    order: ${order}
    namespaceSelector: {matchLabels: {ns: x}}
    ingress:
    - action: ${action}
      source:
        namespaceSelector: {matchLabels: {ns: ${from}}}
  `);
}

const X_DENY_ALL = np("x", "deny-all", `
  podSelector: {}
  policyTypes: [Ingress]
`);

// ---- grids ----

/** x isolated for ingress; only y gets in. */
const X_FROM_Y_ONLY = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   .   .   .   .   .   .
x/b   X   .   X   .   .   .   .   .   .
x/c   X   X   .   .   .   .   .   .   .
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   .   .   .   .   .   .   .   .   .
z/a   X   X   X   .   .   .   .   .   .
z/b   X   X   X   .   .   .   .   .   .
z/c   X   X   X   .   .   .   .   .   .
`;

/** Everything open but y -> x. */
export const X_NOT_FROM_Y = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   .   .   .
x/b   .   .   .   .   .   .   .   .   .
x/c   .   .   .   .   .   .   .   .   .
y/a   X   X   X   .   .   .   .   .   .
y/b   X   X   X   .   .   .   .   .   .
y/c   X   X   X   .   .   .   .   .   .
z/a   .   .   .   .   .   .   .   .   .
z/b   .   .   .   .   .   .   .   .   .
z/c   .   .   .   .   .   .   .   .   .
`;

/** Everything open but z -> x. */
const X_NOT_FROM_Z = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   .   .   .
x/b   .   .   .   .   .   .   .   .   .
x/c   .   .   .   .   .   .   .   .   .
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   .   .   .   .   .   .   .   .   .
z/a   X   X   X   .   .   .   .   .   .
z/b   X   X   X   .   .   .   .   .   .
z/c   X   X   X   .   .   .   .   .   .
`;

/** x receives only from z. */
const X_FROM_Z_ONLY = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   .   .   .   .   .   .
x/b   X   .   X   .   .   .   .   .   .
x/c   X   X   .   .   .   .   .   .   .
y/a   X   X   X   .   .   .   .   .   .
y/b   X   X   X   .   .   .   .   .   .
y/c   X   X   X   .   .   .   .   .   .
z/a   .   .   .   .   .   .   .   .   .
z/b   .   .   .   .   .   .   .   .   .
z/c   .   .   .   .   .   .   .   .   .
`;

/** Only x receives (from everyone); everybody else receives nothing but from itself. */
const ONLY_X_RECEIVES = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   X   X   X   X   X   X
x/b   .   .   .   X   X   X   X   X   X
x/c   .   .   .   X   X   X   X   X   X
y/a   .   .   .   .   X   X   X   X   X
y/b   .   .   .   X   .   X   X   X   X
y/c   .   .   .   X   X   .   X   X   X
z/a   .   .   .   X   X   X   .   X   X
z/b   .   .   .   X   X   X   X   .   X
z/c   .   .   .   X   X   X   X   X   .
`;

export const TENANT_LABELS: Step["label"] = [
  { ns: "x", set: { tenant: "red" } },
  { ns: "y", set: { tenant: "blue" } },
  { ns: "z", set: { role: "shared" } },
];

/** The pods of each node, to probe a host from all of them. */
const FROM_ALL = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];
const hostsFrom = (host: string, open: (from: string) => boolean): NonNullable<Step["hosts"]> => FROM_ALL.map((from) => ({ from, host, expect: open(from) ? "." : "X" }));

/** An egress Deny of every node (the os label every Node carries) for the pods of every namespace, as upstream's node-peer conformance tests write it. */
function denyNodes(name: string, tier: "Admin" | "Baseline", priority: number, to = "nodes: {matchLabels: {kubernetes.io/os: linux}}"): string {
  return cnp(name, tier, priority, `
    subject:
      namespaces: {}
    egress:
    - name: deny-nodes
      action: Deny
      to:
      - ${to}
  `);
}

/** A tenant's namespaces deny ingress from every namespace of another tenant. */
function tenantIsolation(tenant: string, priority: number): string {
  return cnp(`tenant-${tenant}`, "Admin", priority, `
    subject:
      namespaces: {matchLabels: {tenant: ${tenant}}}
    ingress:
    - name: deny-other-tenants
      action: Deny
      from:
      - namespaces:
          matchExpressions:
          - {key: tenant, operator: Exists}
          - {key: tenant, operator: NotIn, values: [${tenant}]}
  `);
}

export const MULTI_TENANT = [
  cnp("shared-services", "Admin", 5, `
    subject:
      namespaces: {matchLabels: {role: shared}}
    ingress:
    - name: to-namespace-policy
      action: Pass
      from:
      - namespaces: {}
  `),
  tenantIsolation("red", 10),
  tenantIsolation("blue", 11),
  cnp("default-deny", "Baseline", 100, `
    subject:
      namespaces: {}
    ingress:
    - name: deny-all
      action: Deny
      from:
      - namespaces: {}
  `),
  np("y", "allow-all-in", `
    podSelector: {}
    ingress:
    - from:
      - namespaceSelector: {}
  `),
  np("z", "from-red", `
    podSelector: {}
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {tenant: red}}
  `),
].join("");

/** x red, y blue, z shared: tenants never reach each other; z takes only red (its NetworkPolicy); x has no NetworkPolicy, so the Baseline closes it. */
const TENANT_GRID = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   X   X   X   .   .   .
x/b   X   .   X   X   X   X   .   .   .
x/c   X   X   .   X   X   X   .   .   .
y/a   X   X   X   .   .   .   X   X   X
y/b   X   X   X   .   .   .   X   X   X
y/c   X   X   X   .   .   .   X   X   X
z/a   X   X   X   .   .   .   .   X   X
z/b   X   X   X   .   .   .   X   .   X
z/c   X   X   X   .   .   .   X   X   .
`;

export const CLUSTER_SCENARIOS: Scenario<ClusterBullet>[] = [
  {
    name: "multi-tenant: Admin Deny across tenants, Admin Pass for shared services, Baseline default-deny",
    covers: ["tenants", "admin-deny", "admin-pass", "baseline-default-deny", "icmp", "update-in-place", "delete"],
    steps: [
      { note: "x red, y blue, z shared services", label: TENANT_LABELS, apply: MULTI_TENANT, port: 80, protocol: "TCP", expected: TENANT_GRID, fromNodes: [{ node: "node-1", to: "x/a", expect: "." }] },
      { port: 0, protocol: "ICMP", expected: TENANT_GRID },
      {
        note: "y joins tenant red",
        label: [{ ns: "y", set: { tenant: "red" } }],
        port: 81, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   .   .   .
          x/b   X   .   X   .   .   .   .   .   .
          x/c   X   X   .   .   .   .   .   .   .
          y/a   X   X   X   .   .   .   .   .   .
          y/b   X   X   X   .   .   .   .   .   .
          y/c   X   X   X   .   .   .   .   .   .
          z/a   X   X   X   .   .   .   .   X   X
          z/b   X   X   X   .   .   .   X   .   X
          z/c   X   X   X   .   .   .   X   X   .
        `,
      },
      {
        note: "the Baseline default-deny deleted",
        delete: ["ClusterNetworkPolicy/default-deny"],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   X   X
          z/b   .   .   .   .   .   .   X   .   X
          z/c   .   .   .   .   .   .   X   X   .
        `,
      },
    ],
  },
  {
    name: "the external range: Baseline egress deny, opened by a GlobalNetworkSet, a NetworkSet and an Admin networks rule",
    covers: ["networks", "network-sets", "egress", "baseline-default-deny", "icmp", "cnp-ports", "delete"],
    steps: [
      {
        note: "nobody reaches 203.0.113.0/24",
        apply: cnp("no-external", "Baseline", 10, `
          subject:
            namespaces: {}
          egress:
          - name: deny-test-net-3
            action: Deny
            to:
            - networks: [203.0.113.0/24]
        `),
        port: 80, protocol: "TCP", expected: ALL, hosts: hostsFrom("ext-1", () => false),
      },
      {
        note: "x reaches it through a GlobalNetworkSet",
        apply:
          doc("sluice.dev/v1", "GlobalNetworkSet", "{name: external, labels: {role: external}}", `
            nets: [203.0.113.0/24]
          `) +
          gnp("x-to-external", `
            order: 10
            namespaceSelector: {matchLabels: {ns: x}}
            types: [Egress]
            egress:
            - name: allow-external
              action: Allow
              destination:
                selector: {matchLabels: {role: external}}
          `),
        port: 80, protocol: "TCP", expected: ALL, hosts: hostsFrom("ext-1", (f) => f.startsWith("x/")),
      },
      { port: 0, protocol: "ICMP", expected: ALL, hosts: hostsFrom("ext-1", (f) => f.startsWith("x/")) },
      {
        note: "y reaches it through a NetworkSet of its own namespace",
        apply:
          doc("sluice.dev/v1", "NetworkSet", "{name: external, namespace: y, labels: {role: external}}", `
            nets: ["{{host:ext-1}}/32"]
          `) +
          gnp("y-to-external", `
            order: 20
            namespaceSelector: {matchLabels: {ns: y}}
            types: [Egress]
            egress:
            - name: allow-external
              action: Allow
              destination:
                namespaceSelector: {matchLabels: {ns: y}}
                selector: {matchLabels: {role: external}}
          `),
        port: 80, protocol: "UDP", expected: ALL, hosts: hostsFrom("ext-1", (f) => !f.startsWith("z/")),
      },
      {
        note: "z reaches it on TCP 80 through an Admin networks rule",
        apply: cnp("z-external-web", "Admin", 20, `
          subject:
            namespaces: {matchLabels: {ns: z}}
          egress:
          - name: accept-test-net-3-web
            action: Accept
            to:
            - networks: [203.0.113.0/24]
            protocols:
            - tcp:
                destinationPort: {number: 80}
        `),
        port: 80, protocol: "TCP", expected: ALL, hosts: hostsFrom("ext-1", () => true),
      },
      { note: "not on TCP 81", port: 81, protocol: "TCP", expected: ALL, hosts: hostsFrom("ext-1", (f) => !f.startsWith("z/")) },
      { note: "the GlobalNetworkSet deleted", delete: ["GlobalNetworkSet/external"], port: 80, protocol: "TCP", expected: ALL, hosts: hostsFrom("ext-1", (f) => !f.startsWith("x/")) },
    ],
  },
  {
    name: "ordering: changing an Admin priority flips Deny and Accept",
    covers: ["cnp-priority", "admin-accept", "admin-deny", "update-in-place"],
    steps: [
      {
        note: "deny-from-y (20) before accept-from-y (30)",
        apply:
          X_DENY_ALL +
          adminToX("accept-from-y", 30, "Accept", "{matchLabels: {ns: y}}") +
          adminToX("deny-from-y", 20, "Deny", "{matchLabels: {ns: y}}"),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
      {
        note: "accept-from-y moved to priority 10",
        apply: adminToX("accept-from-y", 10, "Accept", "{matchLabels: {ns: y}}"),
        port: 80, protocol: "TCP", expected: X_FROM_Y_ONLY,
      },
    ],
  },
  {
    name: "ordering: swapping the rules inside one policy flips the outcome",
    covers: ["cnp-rule-order", "update-in-place"],
    steps: [
      {
        note: "accept-y before deny-y-and-z",
        apply: cnp("ordered", "Admin", 10, `
          subject:
            namespaces: {matchLabels: {ns: x}}
          ingress:
          - name: accept-y
            action: Accept
            from:
            - namespaces: {matchLabels: {ns: y}}
          - name: deny-y-and-z
            action: Deny
            from:
            - namespaces: {matchExpressions: [{key: ns, operator: In, values: [y, z]}]}
        `),
        port: 80, protocol: "TCP", expected: X_NOT_FROM_Z,
      },
      {
        note: "the same rules, swapped",
        apply: cnp("ordered", "Admin", 10, `
          subject:
            namespaces: {matchLabels: {ns: x}}
          ingress:
          - name: deny-y-and-z
            action: Deny
            from:
            - namespaces: {matchExpressions: [{key: ns, operator: In, values: [y, z]}]}
          - name: accept-y
            action: Accept
            from:
            - namespaces: {matchLabels: {ns: y}}
        `),
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   X   X   .   .   .   .   .   .
          y/b   X   X   X   .   .   .   .   .   .
          y/c   X   X   X   .   .   .   .   .   .
          z/a   X   X   X   .   .   .   .   .   .
          z/b   X   X   X   .   .   .   .   .   .
          z/c   X   X   X   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "ordering: GlobalNetworkPolicy order; changing it flips the outcome",
    covers: ["gnp-order", "update-in-place"],
    steps: [
      {
        note: "deny-y (order 10) before allow-y (order 20)",
        apply:
          X_DENY_ALL +
          gnpToX("deny-y", 10, "Deny", "y") +
          gnpToX("allow-y", 20, "Allow", "y"),
        port: 81, protocol: "TCP", expected: X_CLOSED,
      },
      {
        note: "deny-y moved to order 30",
        apply: gnpToX("deny-y", 30, "Deny", "y"),
        port: 81, protocol: "TCP", expected: X_FROM_Y_ONLY,
      },
    ],
  },
  {
    name: "ordering: an Admin ClusterNetworkPolicy of priority 1000 comes before a GlobalNetworkPolicy of order 0",
    covers: ["cnp-before-gnp", "delete"],
    steps: [
      {
        apply:
          X_DENY_ALL +
          gnpToX("deny-y", 0, "Deny", "y") +
          adminToX("accept-y", 1000, "Accept", "{matchLabels: {ns: y}}"),
        port: 80, protocol: "TCP", expected: X_FROM_Y_ONLY,
      },
      { note: "the ClusterNetworkPolicy deleted", delete: ["ClusterNetworkPolicy/accept-y"], port: 80, protocol: "TCP", expected: X_CLOSED },
    ],
  },
  {
    name: "Admin Pass, then NetworkPolicy allows y/b only; without the NetworkPolicy the default allows",
    covers: ["admin-pass", "admin-deny", "delete"],
    steps: [
      {
        apply:
          adminToX("pass-y", 10, "Pass", "{matchLabels: {ns: y}}") +
          adminToX("deny-rest", 20, "Deny", "{}") +
          np("x", "from-y-b", `
            podSelector: {}
            ingress:
            - from:
              - namespaceSelector: {matchLabels: {ns: y}}
                podSelector: {matchLabels: {pod: b}}
          `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   .   .   .
          x/b   X   .   X   .   .   .   .   .   .
          x/c   X   X   .   .   .   .   .   .   .
          y/a   X   X   X   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   X   X   X   .   .   .   .   .   .
          z/a   X   X   X   .   .   .   .   .   .
          z/b   X   X   X   .   .   .   .   .   .
          z/c   X   X   X   .   .   .   .   .   .
        `,
      },
      { note: "the NetworkPolicy deleted", delete: ["x/from-y-b"], port: 80, protocol: "TCP", expected: X_FROM_Y_ONLY },
    ],
  },
  {
    name: "Baseline default-deny only where no NetworkPolicy isolates, direction by direction; own node still reaches its pods",
    covers: ["baseline-default-deny"],
    steps: [
      {
        apply:
          cnp("default-deny", "Baseline", 10, `
            subject:
              namespaces: {}
            ingress:
            - action: Deny
              from:
              - namespaces: {}
          `) +
          np("x", "allow-all", `
            podSelector: {}
            ingress:
            - {}
          `),
        port: 80, protocol: "TCP",
        expected: ONLY_X_RECEIVES,
        fromNodes: [
          { node: "node-1", to: "y/a", expect: "." },
          { node: "node-2", to: "z/b", expect: "." },
        ],
      },
      {
        note: "a NetworkPolicy isolating y for egress only leaves y's ingress to the Baseline",
        apply: np("y", "egress-only", `
          podSelector: {}
          policyTypes: [Egress]
          egress:
          - {}
        `),
        port: 81, protocol: "UDP",
        expected: ONLY_X_RECEIVES,
      },
    ],
  },
  {
    name: "Log, then later rules still decide (deny, then allow)",
    covers: ["gnp-log", "icmp"],
    steps: [
      {
        apply: gnp("log-then-deny", `
          order: 10
          namespaceSelector: {matchLabels: {ns: x}}
          ingress:
          - name: log-all
            action: Log
          - name: deny-y
            action: Deny
            source:
              namespaceSelector: {matchLabels: {ns: y}}
        `),
        port: 80, protocol: "TCP", expected: X_NOT_FROM_Y,
      },
      {
        note: "x isolated by NetworkPolicy; a GlobalNetworkPolicy logs ICMP and allows z before log-then-deny",
        apply:
          X_DENY_ALL +
          gnp("log-then-allow", `
            order: 5
            namespaceSelector: {matchLabels: {ns: x}}
            ingress:
            - name: log-icmp
              action: Log
              protocol: ICMP
            - name: allow-z
              action: Allow
              source:
                namespaceSelector: {matchLabels: {ns: z}}
          `),
        port: 0, protocol: "ICMP", expected: X_FROM_Z_ONLY,
      },
    ],
  },
  {
    name: "protocols: ICMP and UDP 80 opened by a GlobalNetworkPolicy, an SCTP-only rule opens neither TCP nor UDP; ports, ranges and named ports",
    covers: ["icmp", "gnp-ports", "sctp", "cnp-ports"],
    steps: [
      {
        apply:
          X_DENY_ALL +
          gnp("x-ping-and-udp-80", `
            order: 10
            namespaceSelector: {matchLabels: {ns: x}}
            ingress:
            - name: allow-echo
              action: Allow
              protocol: ICMP
              icmp: {type: 8}
            - name: allow-udp-80
              action: Allow
              protocol: UDP
              destination:
                ports: [80]
          `) +
          cnp("x-sctp-80", "Admin", 10, `
            subject:
              namespaces: {matchLabels: {ns: x}}
            ingress:
            - name: accept-sctp-80
              action: Accept
              from:
              - namespaces: {}
              protocols:
              - sctp:
                  destinationPort: {number: 80}
          `),
        port: 0, protocol: "ICMP", expected: ALL,
      },
      { port: 80, protocol: "UDP", expected: ALL },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
      { port: 80, protocol: "TCP", expected: X_CLOSED },
      {
        note: "y denies TCP 81-90 (a range), z its port named serve-81-tcp",
        apply:
          cnp("y-deny-tcp-81-90", "Admin", 10, `
            subject:
              namespaces: {matchLabels: {ns: y}}
            ingress:
            - action: Deny
              from:
              - namespaces: {}
              protocols:
              - tcp:
                  destinationPort:
                    range: {start: 81, end: 90}
          `) +
          cnp("z-deny-named-81", "Admin", 10, `
            subject:
              namespaces: {matchLabels: {ns: z}}
            ingress:
            - action: Deny
              from:
              - namespaces: {}
              protocols:
              - destinationNamedPort: serve-81-tcp
          `),
        port: 81, protocol: "TCP", expected: ONLY_SELF,
      },
      { note: "TCP 80 is outside both", port: 80, protocol: "TCP", expected: X_CLOSED },
    ],
  },
  {
    name: "nodes peers: no pod may reach node-2, not even node-2's own pods; updated to node-1 and node-3",
    covers: ["nodes-peers", "egress", "update-in-place"],
    steps: [
      {
        apply: cnp("no-node-2", "Admin", 10, `
          subject:
            namespaces: {}
          egress:
          - name: deny-node-2
            action: Deny
            to:
            - nodes: {matchLabels: {kubernetes.io/hostname: node-2}}
        `),
        port: 0, protocol: "ICMP", expected: ALL,
        hosts: [...hostsFrom("node-2", () => false), ...hostsFrom("node-1", () => true)],
      },
      {
        note: "the rule now names node-1 and node-3",
        apply: cnp("no-node-2", "Admin", 10, `
          subject:
            namespaces: {}
          egress:
          - name: deny-node-2
            action: Deny
            to:
            - nodes: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-1, node-3]}]}
        `),
        port: 0, protocol: "ICMP", expected: ALL,
        hosts: [...hostsFrom("node-2", () => true), ...hostsFrom("node-1", () => false)],
      },
    ],
  },
  {
    name: "GlobalNetworkPolicy nets and notNets for a pods selector; ClusterNetworkPolicy subject.pods and a pods peer",
    covers: ["gnp-nets", "cnp-subject-pods", "egress"],
    steps: [
      {
        apply:
          gnp("a-only-to-node-2-pods", `
            order: 10
            selector: {matchLabels: {pod: a}}
            types: [Egress]
            egress:
            - name: deny-cluster-but-node-2
              action: Deny
              destination:
                nets: ["{{network}}"]
                notNets: ["{{subnet:node-2}}"]
          `) +
          cnp("c-not-from-z-b", "Admin", 10, `
            subject:
              pods:
                namespaceSelector: {}
                podSelector: {matchLabels: {pod: c}}
            ingress:
            - action: Deny
              from:
              - pods:
                  namespaceSelector: {matchLabels: {ns: z}}
                  podSelector: {matchLabels: {pod: b}}
          `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   X   X   .   X   X   .   X
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   .   X   .   .   X   X   .   X
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   X   .   X   X   .   X   .   .   X
          z/b   .   .   X   .   .   X   .   .   X
          z/c   .   .   .   .   .   .   .   .   .
        `,
        hosts: hostsFrom("ext-1", () => true),
      },
    ],
  },
  {
    name: "own node, Admin tier: a Deny of nodes, then of 0.0.0.0/0, blocks every node's server, the pod's own node's too; an Accept reopens node-1 for x; GlobalNetworkPolicy nets likewise",
    covers: ["own-node", "nodes-peers", "networks", "gnp-nets", "admin-accept", "egress", "update-in-place", "delete"],
    steps: [
      { apply: denyNodes("deny-to-nodes", "Admin", 10), port: 80, protocol: "TCP", expected: ALL, hosts: nodesFrom(() => false) },
      { note: "the rule now denies networks 0.0.0.0/0 (every pod too)", apply: denyNodes("deny-to-nodes", "Admin", 10, `networks: ["0.0.0.0/0"]`), port: 80, protocol: "TCP", expected: ONLY_SELF, hosts: nodesFrom(() => false) },
      {
        note: "an Admin Accept of node-1 for x, at a higher priority",
        apply: cnp("x-to-node-1", "Admin", 5, `
          subject:
            namespaces: {matchLabels: {ns: x}}
          egress:
          - action: Accept
            to:
            - nodes: {matchLabels: {kubernetes.io/hostname: node-1}}
        `),
        port: 80, protocol: "TCP", expected: ONLY_SELF,
        hosts: nodesFrom((from, node) => from.startsWith("x/") && node === "node-1"),
      },
      {
        note: "both deleted; a GlobalNetworkPolicy denies y egress to node-1's address",
        apply: gnp("y-not-to-node-1", `
          order: 10
          namespaceSelector: {matchLabels: {ns: y}}
          types: [Egress]
          egress:
          - action: Deny
            destination:
              nets: ["{{host:node-1}}/32"]
        `),
        delete: ["ClusterNetworkPolicy/deny-to-nodes", "ClusterNetworkPolicy/x-to-node-1"],
        port: 80, protocol: "TCP", expected: ALL,
        hosts: nodesFrom((from, node) => !(from.startsWith("y/") && node === "node-1")),
      },
    ],
  },
  {
    name: "own node, Baseline tier: a Deny of nodes blocks every node's server, the pod's own node's too; an Admin Accept wins; a NetworkPolicy opens node-1 from other nodes only",
    covers: ["own-node", "nodes-peers", "admin-accept", "egress"],
    steps: [
      { apply: denyNodes("base-deny-nodes", "Baseline", 10), port: 80, protocol: "TCP", expected: ALL, hosts: nodesFrom(() => false) },
      {
        note: "z may reach node-1: an Admin Accept",
        apply: cnp("z-to-node-1", "Admin", 10, `
          subject:
            namespaces: {matchLabels: {ns: z}}
          egress:
          - action: Accept
            to:
            - nodes: {matchLabels: {kubernetes.io/hostname: node-1}}
        `),
        port: 80, protocol: "TCP", expected: ALL,
        hosts: nodesFrom((from, node) => from.startsWith("z/") && node === "node-1"),
      },
      {
        note: "x's NetworkPolicy allows egress to every pod and to node-1's address: x/b and x/c get there, x/a (on node-1) is still the Baseline's",
        apply: np("x", "egress-to-node-1", `
          podSelector: {}
          policyTypes: [Egress]
          egress:
          - to:
            - namespaceSelector: {}
          - to:
            - ipBlock: {cidr: "{{host:node-1}}/32"}
        `),
        port: 80, protocol: "TCP", expected: ALL,
        hosts: nodesFrom((from, node) => node === "node-1" && (from.startsWith("z/") || from === "x/b" || from === "x/c")),
      },
    ],
  },
  {
    name: "own node, NetworkPolicy: an egress deny-all never blocks the pod's own node; an Admin Pass hands the traffic to NetworkPolicy, which still does not",
    covers: ["own-node", "admin-pass", "egress"],
    steps: [
      {
        apply: np("x", "no-egress", `
          podSelector: {}
          policyTypes: [Egress]
        `),
        port: 80, protocol: "TCP", expected: X_SENDS_NOTHING,
        hosts: nodesFrom((from, _node, own) => !from.startsWith("x/") || own),
      },
      {
        note: "an Admin Deny of every node for everyone, after an Admin Pass of every node for x",
        apply:
          cnp("x-pass-nodes", "Admin", 5, `
            subject:
              namespaces: {matchLabels: {ns: x}}
            egress:
            - action: Pass
              to:
              - nodes: {}
          `) + denyNodes("deny-to-nodes", "Admin", 10, "nodes: {}"),
        port: 80, protocol: "TCP", expected: X_SENDS_NOTHING,
        hosts: nodesFrom((from, _node, own) => from.startsWith("x/") && own),
      },
    ],
  },
];
