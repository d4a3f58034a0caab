/**
 * The NetworkPolicy end-to-end scenarios: data only. Every expected matrix is written by
 * hand from the NetworkPolicy spec (networking.k8s.io/v1); nothing here is computed by
 * the code under test. test/e2e/policy/expectations.test.ts re-derives each grid with an
 * independent evaluator (oracle.ts) as a second opinion, the way upstream's truth-table
 * tests cross-check theirs.
 *
 * Grids: rows = from, columns = to; '.' connected, 'X' blocked. The diagonal is always
 * '.': a pod connecting to its own address never leaves its network namespace. A step's
 * `hosts` probes to a node reach the host-network server every node runs on the pods'
 * ports (model.ts): from the node's own pods through INPUT there, from the others through
 * FORWARD on their node.
 *
 * Placeholders in policy text, filled at run time from the real cluster (the expected
 * grids stay literal):
 *   {{network}}         the cluster network (e.g. 10.244.0.0/16)
 *   {{subnet:node-2}}   the pod subnet leased by a node (every b pod lives there)
 *   {{ip:x/b}}          a pod's address
 *   {{host:ext-1}}      an address outside the pod network: the external host's, a node's ({{host:node-2}})
 *
 * Step actions run in this order: createNamespace, recreatePod, apply, label, delete,
 * deleteNamespace. After a step with actions the runner waits until every node reports the
 * change in force, at most settleMs (600 ms), and probes once: changes must be in force on
 * every node within 600 ms (runner.ts).
 */
import type { Protocol } from "../../helpers/policyMatrix.js";
import { HOME_NODE, NODES, POD_KEYS, type ProbePort } from "./model.js";

export const BULLETS = {
  "default-allow": "a pod no policy selects accepts everything and sends anywhere",
  "pod-selector-empty": "podSelector {} selects every pod of the policy's namespace",
  "match-labels": "podSelector / namespaceSelector matchLabels",
  "expr-in": "matchExpressions operator In",
  "expr-notin": "matchExpressions operator NotIn",
  "expr-exists": "matchExpressions operator Exists",
  "expr-doesnotexist": "matchExpressions operator DoesNotExist",
  "expr-and-labels": "matchLabels and several matchExpressions in one selector are ANDed",
  "types-explicit": "policyTypes given explicitly (Ingress, Egress, both)",
  "types-default-ingress": "policyTypes absent: Ingress always",
  "types-default-egress": "policyTypes absent: Egress only when egress rules exist",
  "isolation-per-direction": "a pod selected by a policy of a direction is isolated in that direction only",
  "union": "allowed traffic is the union of every policy selecting the pod",
  "both-ends": "a connection needs the source's egress and the destination's ingress to allow it",
  "peer-pod-selector": "peer podSelector alone: pods of the policy's own namespace only",
  "peer-namespace-selector": "peer namespaceSelector alone: every pod of the selected namespaces",
  "peer-namespace-selector-empty": "peer namespaceSelector {}: every namespace",
  "peer-and": "namespaceSelector and podSelector in one peer: AND",
  "peer-or": "several peers in one rule: OR",
  "rules-or": "several rules in one policy: OR; peers and ports within a rule: AND",
  "ip-block": "ipBlock matches pod addresses",
  "ip-block-except": "ipBlock except carves addresses out",
  "from-empty": "from: [] / to: [] / absent: every peer",
  "allow-all-rule": "ingress: [{}] / egress: [{}] allows everything",
  "empty-rule-list": "no rules / an empty rule list denies everything in that direction",
  "port-number": "ports: a number",
  "named-port": "ports: a named port resolved against the destination pod's container ports",
  "named-port-egress": "named ports in egress rules resolve against the destination pod",
  "named-port-protocol": "a named port only matches with the protocol it is declared with",
  "end-port": "ports: port..endPort ranges",
  "protocol-default-tcp": "a port without protocol means TCP",
  "udp": "UDP rules open UDP only; the pod stays isolated for TCP",
  "sctp": "an SCTP-only rule opens neither TCP nor UDP and keeps the pod isolated",
  "node-to-pod": "traffic from the pod's own node is always allowed",
  "pod-to-own-node": "a pod's egress to its own node (a host-network server there) is never blocked by NetworkPolicy; to another node it is",
  "pod-to-self": "a pod reaches itself whatever the policy",
  "pod-label-change": "pod label changes take effect (as target and as peer)",
  "namespace-label-change": "namespace label changes take effect",
  "pod-lifecycle": "pods deleted and created (new address, other node) take effect",
  "namespace-lifecycle": "namespaces created and deleted take effect",
  "policy-create": "creating a policy takes effect",
  "policy-update": "updating a policy in place takes effect",
  "policy-delete": "deleting a policy takes effect",
} as const;
export type Bullet = keyof typeof BULLETS;

export type Cell = "." | "X";

export interface LabelChange {
  /** `<namespace>/<pod>`, or use `ns`. */
  pod?: string;
  ns?: string;
  /** null removes the label. */
  set: Record<string, string | null>;
}

export interface NewNamespace {
  name: string;
  labels: Record<string, string>;
  pods: Array<{ name: string; node: string; labels: Record<string, string> }>;
}

export interface Step {
  note?: string;
  createNamespace?: NewNamespace[];
  /** Delete the pod and create it again (same name and labels) on `node`: a new endpoint, a new address. */
  recreatePod?: Array<{ pod: string; node: string }>;
  /**
   * YAML of NetworkPolicy, ClusterNetworkPolicy, GlobalNetworkPolicy, NetworkSet and
   * GlobalNetworkSet documents (several allowed); an existing object is updated in place.
   */
  apply?: string;
  label?: LabelChange[];
  /** Objects to delete: `<namespace>/<name>` (NetworkPolicy), `<Kind>/<name>`, `<Kind>/<namespace>/<name>` (state.ts objectKey). */
  delete?: string[];
  deleteNamespace?: string[];
  /** 80 or 81 for TCP and UDP; 0 for ICMP. */
  port: ProbePort;
  protocol: Protocol;
  expected: string;
  /** Probes from a node's own network namespace to a pod, same port and protocol. */
  fromNodes?: Array<{ node: string; to: string; expect: Cell }>;
  /** Probes outside the 9x9 model (pods of namespaces a step created). */
  extra?: Array<{ from: string; to: string; expect: Cell }>;
  /** Probes from pods to addresses outside the pod network: a node's (`node-2`) or the external host's (`ext-1`). */
  hosts?: Array<{ from: string; host: string; expect: Cell }>;
}

export interface Scenario<B extends string = Bullet> {
  name: string;
  covers: B[];
  steps: Step[];
}

export function hasActions(s: Step): boolean {
  return Boolean(s.createNamespace?.length || s.recreatePod?.length || s.apply || s.label?.length || s.delete?.length || s.deleteNamespace?.length);
}

// ---- policy text ----

export function dedent(s: string): string {
  const lines = s.replace(/^\n/, "").replace(/\s+$/, "").split("\n");
  const ind = Math.min(...lines.filter((l) => l.trim()).map((l) => (/^ */.exec(l) as RegExpExecArray)[0].length));
  return lines.map((l) => l.slice(ind)).join("\n");
}

/** One document: apiVersion, kind, metadata (YAML flow text) and `spec` as YAML (indentation is normalised). */
export function doc(apiVersion: string, kind: string, metadata: string, spec: string): string {
  const body = dedent(spec)
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
  return `---\napiVersion: ${apiVersion}\nkind: ${kind}\nmetadata: ${metadata}\nspec:\n${body}\n`;
}

/** One NetworkPolicy document; `spec` is YAML (indentation is normalised). */
export function np(namespace: string, name: string, spec: string): string {
  return doc("networking.k8s.io/v1", "NetworkPolicy", `{name: ${name}, namespace: ${namespace}}`, spec);
}

// ---- grids used by several scenarios (hand-written once) ----

export const ALL = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   .   .   .
x/b   .   .   .   .   .   .   .   .   .
x/c   .   .   .   .   .   .   .   .   .
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   .   .   .   .   .   .   .   .   .
z/a   .   .   .   .   .   .   .   .   .
z/b   .   .   .   .   .   .   .   .   .
z/c   .   .   .   .   .   .   .   .   .
`;

/** Every pod of x isolated for ingress with nothing allowed. */
export const X_CLOSED = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   .   .   .   .   .   .
x/b   X   .   X   .   .   .   .   .   .
x/c   X   X   .   .   .   .   .   .   .
y/a   X   X   X   .   .   .   .   .   .
y/b   X   X   X   .   .   .   .   .   .
y/c   X   X   X   .   .   .   .   .   .
z/a   X   X   X   .   .   .   .   .   .
z/b   X   X   X   .   .   .   .   .   .
z/c   X   X   X   .   .   .   .   .   .
`;

/** Every pod of z isolated for ingress with nothing allowed. */
export const Z_CLOSED = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   X   X   X
x/b   .   .   .   .   .   .   X   X   X
x/c   .   .   .   .   .   .   X   X   X
y/a   .   .   .   .   .   .   X   X   X
y/b   .   .   .   .   .   .   X   X   X
y/c   .   .   .   .   .   .   X   X   X
z/a   .   .   .   .   .   .   .   X   X
z/b   .   .   .   .   .   .   X   .   X
z/c   .   .   .   .   .   .   X   X   .
`;

/** x sends to nobody but itself; everything else open. */
export const X_SENDS_NOTHING = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   X   X   X   X   X   X
x/b   X   .   X   X   X   X   X   X   X
x/c   X   X   .   X   X   X   X   X   X
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   .   .   .   .   .   .   .   .   .
z/a   .   .   .   .   .   .   .   .   .
z/b   .   .   .   .   .   .   .   .   .
z/c   .   .   .   .   .   .   .   .   .
`;

/** Probes from every pod to every node's host-network server (model.ts); `own`: the node is the pod's own. */
export const nodesFrom = (open: (from: string, node: string, own: boolean) => boolean): NonNullable<Step["hosts"]> =>
  NODES.flatMap((node) => POD_KEYS.map((from) => ({ from, host: node, expect: open(from, node, HOME_NODE[from.slice(from.indexOf("/") + 1)] === node) ? ("." as const) : ("X" as const) })));

/** Nothing but the diagonal. */
export const ONLY_SELF = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   X   X   X   X   X   X
x/b   X   .   X   X   X   X   X   X   X
x/c   X   X   .   X   X   X   X   X   X
y/a   X   X   X   .   X   X   X   X   X
y/b   X   X   X   X   .   X   X   X   X
y/c   X   X   X   X   X   .   X   X   X
z/a   X   X   X   X   X   X   .   X   X
z/b   X   X   X   X   X   X   X   .   X
z/c   X   X   X   X   X   X   X   X   .
`;

/** Only x/b may reach x/a (and x/a itself). */
const XA_FROM_XB = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   .   .   .
x/b   .   .   .   .   .   .   .   .   .
x/c   X   .   .   .   .   .   .   .   .
y/a   X   .   .   .   .   .   .   .   .
y/b   X   .   .   .   .   .   .   .   .
y/c   X   .   .   .   .   .   .   .   .
z/a   X   .   .   .   .   .   .   .   .
z/b   X   .   .   .   .   .   .   .   .
z/c   X   .   .   .   .   .   .   .   .
`;

/** Only y/b may reach x/a (and x/a itself). */
const XA_FROM_YB = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   .   .   .   .   .   .
x/b   X   .   .   .   .   .   .   .   .
x/c   X   .   .   .   .   .   .   .   .
y/a   X   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   X   .   .   .   .   .   .   .   .
z/a   X   .   .   .   .   .   .   .   .
z/b   X   .   .   .   .   .   .   .   .
z/c   X   .   .   .   .   .   .   .   .
`;

/** x/a reaches nobody but itself; everything else open. */
const XA_SENDS_NOTHING = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   X   X   X   X   X   X   X   X
x/b   .   .   .   .   .   .   .   .   .
x/c   .   .   .   .   .   .   .   .   .
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   .   .   .   .   .   .
y/c   .   .   .   .   .   .   .   .   .
z/a   .   .   .   .   .   .   .   .   .
z/b   .   .   .   .   .   .   .   .   .
z/c   .   .   .   .   .   .   .   .   .
`;

/** Nobody but itself reaches y/a. */
const YA_CLOSED = `
//   x/a x/b x/c y/a y/b y/c z/a z/b z/c
x/a   .   .   .   X   .   .   .   .   .
x/b   .   .   .   X   .   .   .   .   .
x/c   .   .   .   X   .   .   .   .   .
y/a   .   .   .   .   .   .   .   .   .
y/b   .   .   .   X   .   .   .   .   .
y/c   .   .   .   X   .   .   .   .   .
z/a   .   .   .   X   .   .   .   .   .
z/b   .   .   .   X   .   .   .   .   .
z/c   .   .   .   X   .   .   .   .   .
`;

const OWN_NODES_X: Step["fromNodes"] = [
  { node: "node-1", to: "x/a", expect: "." },
  { node: "node-2", to: "x/b", expect: "." },
  { node: "node-3", to: "x/c", expect: "." },
];

const OWN_NODES_ALL: Step["fromNodes"] = ["x", "y", "z"].flatMap((ns) => [
  { node: "node-1", to: `${ns}/a`, expect: "." as const },
  { node: "node-2", to: `${ns}/b`, expect: "." as const },
  { node: "node-3", to: `${ns}/c`, expect: "." as const },
]);

const X_DENY_ALL = np("x", "deny-all", `
  podSelector: {}
  policyTypes: [Ingress]
`);

// ---- the scenarios ----

export const SCENARIOS: Scenario[] = [
  {
    name: "no policy: every pair connects on TCP and UDP, ports 80 and 81",
    covers: ["default-allow", "pod-to-self"],
    steps: [
      { port: 80, protocol: "TCP", expected: ALL },
      { port: 81, protocol: "TCP", expected: ALL },
      { port: 80, protocol: "UDP", expected: ALL },
      { port: 81, protocol: "UDP", expected: ALL },
    ],
  },
  {
    name: "deny-all ingress in x (policyTypes [Ingress], no rules); own node still reaches its pods",
    covers: ["pod-selector-empty", "types-explicit", "empty-rule-list", "node-to-pod", "pod-to-self", "policy-create", "isolation-per-direction"],
    steps: [
      { apply: X_DENY_ALL, port: 80, protocol: "TCP", expected: X_CLOSED, fromNodes: OWN_NODES_X },
      { port: 81, protocol: "UDP", expected: X_CLOSED, fromNodes: OWN_NODES_X },
    ],
  },
  {
    name: "policyTypes absent and no rules: defaults to Ingress, egress stays open",
    covers: ["types-default-ingress", "empty-rule-list", "isolation-per-direction"],
    steps: [
      {
        apply: np("x", "default-deny", `
          podSelector: {}
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
    ],
  },
  {
    name: "ingress: [] (an empty rule list) denies every source",
    covers: ["empty-rule-list", "types-default-ingress"],
    steps: [
      {
        apply: np("y", "empty-ingress", `
          podSelector: {}
          ingress: []
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   X   X   X   .   .   .
          x/b   .   .   .   X   X   X   .   .   .
          x/c   .   .   .   X   X   X   .   .   .
          y/a   .   .   .   .   X   X   .   .   .
          y/b   .   .   .   X   .   X   .   .   .
          y/c   .   .   .   X   X   .   .   .   .
          z/a   .   .   .   X   X   X   .   .   .
          z/b   .   .   .   X   X   X   .   .   .
          z/c   .   .   .   X   X   X   .   .   .
        `,
      },
    ],
  },
  {
    name: "policyTypes absent with egress: [] : Egress is not defaulted on, only Ingress",
    covers: ["types-default-egress", "types-default-ingress"],
    steps: [
      {
        apply: np("z", "empty-egress", `
          podSelector: {}
          egress: []
        `),
        port: 80, protocol: "TCP", expected: Z_CLOSED,
      },
    ],
  },
  {
    name: "policyTypes absent with an egress rule: both directions isolated",
    covers: ["types-default-egress", "types-default-ingress", "peer-pod-selector", "isolation-per-direction"],
    steps: [
      {
        apply: np("x", "egress-to-b", `
          podSelector: {matchLabels: {pod: a}}
          egress:
          - to:
            - podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   X   X   X   X   X   X   X
          x/b   X   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "policyTypes [Egress] without rules: x sends nothing, still receives; its pods still reach their own node",
    covers: ["types-explicit", "empty-rule-list", "isolation-per-direction", "pod-to-own-node"],
    steps: [
      {
        apply: np("x", "deny-egress", `
          podSelector: {}
          policyTypes: [Egress]
        `),
        port: 80, protocol: "TCP", expected: X_SENDS_NOTHING,
        hosts: nodesFrom((from, _node, own) => !from.startsWith("x/") || own),
      },
      {
        port: 81, protocol: "UDP", expected: X_SENDS_NOTHING,
        hosts: nodesFrom((from, _node, own) => !from.startsWith("x/") || own),
      },
    ],
  },
  {
    name: "policyTypes [Ingress] given explicitly: egress rules in the same policy are ignored",
    covers: ["types-explicit", "isolation-per-direction", "peer-pod-selector"],
    steps: [
      {
        apply: np("x", "ingress-only", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Ingress]
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: c}}
          egress:
          - to:
            - podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "policyTypes [Ingress, Egress] without rules: x/b fully isolated but for its own node",
    covers: ["types-explicit", "empty-rule-list", "node-to-pod", "pod-to-self"],
    steps: [
      {
        apply: np("x", "isolate-b", `
          podSelector: {matchLabels: {pod: b}}
          policyTypes: [Ingress, Egress]
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   .   .   .   .   .   .   .
          x/b   X   .   X   X   X   X   X   X   X
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   .   .   .   .   .   .   .
          y/b   .   X   .   .   .   .   .   .   .
          y/c   .   X   .   .   .   .   .   .   .
          z/a   .   X   .   .   .   .   .   .   .
          z/b   .   X   .   .   .   .   .   .   .
          z/c   .   X   .   .   .   .   .   .   .
        `,
        fromNodes: [{ node: "node-2", to: "x/b", expect: "." }],
      },
      {
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   .   .   .   .   .   .   .
          x/b   X   .   X   X   X   X   X   X   X
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   .   .   .   .   .   .   .
          y/b   .   X   .   .   .   .   .   .   .
          y/c   .   X   .   .   .   .   .   .   .
          z/a   .   X   .   .   .   .   .   .   .
          z/b   .   X   .   .   .   .   .   .   .
          z/c   .   X   .   .   .   .   .   .   .
        `,
        fromNodes: [{ node: "node-2", to: "x/b", expect: "." }],
      },
    ],
  },
  {
    name: "ingress: [{}] allows everything; the union with a deny-all is allow-all",
    covers: ["allow-all-rule", "union", "policy-create"],
    steps: [
      { apply: X_DENY_ALL, port: 80, protocol: "TCP", expected: X_CLOSED },
      {
        apply: np("x", "allow-all", `
          podSelector: {}
          ingress:
          - {}
        `),
        port: 80, protocol: "TCP", expected: ALL,
      },
      { port: 81, protocol: "UDP", expected: ALL },
    ],
  },
  {
    name: "ingress from: [] matches every source",
    covers: ["from-empty", "union", "match-labels"],
    steps: [
      {
        apply: X_DENY_ALL + np("x", "open-a", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from: []
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   .   .   .
          x/b   .   .   X   .   .   .   .   .   .
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   X   .   .   .   .   .   .
          y/b   .   X   X   .   .   .   .   .   .
          y/c   .   X   X   .   .   .   .   .   .
          z/a   .   X   X   .   .   .   .   .   .
          z/b   .   X   X   .   .   .   .   .   .
          z/c   .   X   X   .   .   .   .   .   .
        `,
      },
      {
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   .   .   .
          x/b   .   .   X   .   .   .   .   .   .
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   X   .   .   .   .   .   .
          y/b   .   X   X   .   .   .   .   .   .
          y/c   .   X   X   .   .   .   .   .   .
          z/a   .   X   X   .   .   .   .   .   .
          z/b   .   X   X   .   .   .   .   .   .
          z/c   .   X   X   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "egress to: [] and egress: [{}] match every destination",
    covers: ["from-empty", "allow-all-rule", "union", "types-explicit"],
    steps: [
      {
        apply: np("x", "deny-egress", `
          podSelector: {}
          policyTypes: [Egress]
        `) + np("x", "egress-c", `
          podSelector: {matchLabels: {pod: c}}
          policyTypes: [Egress]
          egress:
          - to: []
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   X   X   X   X   X   X
          x/b   X   .   X   X   X   X   X   X   X
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      {
        apply: np("x", "egress-b", `
          podSelector: {matchLabels: {pod: b}}
          policyTypes: [Egress]
          egress:
          - {}
        `),
        port: 81, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   X   X   X   X   X   X
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "a rule with ports and no from: the port is open to all, protocol defaults to TCP",
    covers: ["port-number", "protocol-default-tcp", "from-empty", "udp"],
    steps: [
      {
        apply: np("x", "allow-80", `
          podSelector: {}
          ingress:
          - ports:
            - port: 80
        `),
        port: 80, protocol: "TCP", expected: ALL,
      },
      { port: 81, protocol: "TCP", expected: X_CLOSED },
      { port: 80, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "peer podSelector alone selects pods of the policy's namespace only",
    covers: ["peer-pod-selector", "match-labels"],
    steps: [
      {
        apply: np("x", "a-from-b", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP", expected: XA_FROM_XB,
      },
    ],
  },
  {
    name: "peer podSelector {} selects every pod of the policy's namespace and no other",
    covers: ["peer-pod-selector", "pod-selector-empty"],
    steps: [
      {
        apply: np("y", "from-own-namespace", `
          podSelector: {}
          ingress:
          - from:
            - podSelector: {}
        `),
        port: 81, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   X   X   X   .   .   .
          x/b   .   .   .   X   X   X   .   .   .
          x/c   .   .   .   X   X   X   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   X   X   X   .   .   .
          z/b   .   .   .   X   X   X   .   .   .
          z/c   .   .   .   X   X   X   .   .   .
        `,
      },
    ],
  },
  {
    name: "peer namespaceSelector alone selects every pod of the matching namespaces",
    covers: ["peer-namespace-selector", "match-labels"],
    steps: [
      {
        apply: np("x", "a-from-y", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: y}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "namespaceSelector on kubernetes.io/metadata.name",
    covers: ["peer-namespace-selector", "match-labels"],
    steps: [
      {
        apply: np("z", "from-x-by-name", `
          podSelector: {}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   X   X   X
          y/b   .   .   .   .   .   .   X   X   X
          y/c   .   .   .   .   .   .   X   X   X
          z/a   .   .   .   .   .   .   .   X   X
          z/b   .   .   .   .   .   .   X   .   X
          z/c   .   .   .   .   .   .   X   X   .
        `,
      },
    ],
  },
  {
    name: "peer namespaceSelector {} selects every namespace, the policy's own included",
    covers: ["peer-namespace-selector-empty", "union"],
    steps: [
      { apply: X_DENY_ALL, port: 80, protocol: "TCP", expected: X_CLOSED },
      {
        apply: np("x", "from-all-namespaces", `
          podSelector: {}
          ingress:
          - from:
            - namespaceSelector: {}
        `),
        port: 80, protocol: "TCP", expected: ALL,
      },
    ],
  },
  {
    name: "namespaceSelector and podSelector in one peer are ANDed",
    covers: ["peer-and", "match-labels"],
    steps: [
      {
        apply: np("y", "from-x-b", `
          podSelector: {}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: x}}
              podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   X   X   X   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   X   X   X   .   .   .
          y/a   .   .   .   .   X   X   .   .   .
          y/b   .   .   .   X   .   X   .   .   .
          y/c   .   .   .   X   X   .   .   .   .
          z/a   .   .   .   X   X   X   .   .   .
          z/b   .   .   .   X   X   X   .   .   .
          z/c   .   .   .   X   X   X   .   .   .
        `,
      },
    ],
  },
  {
    name: "namespaceSelector {} with a podSelector: those pods in every namespace",
    covers: ["peer-and", "peer-namespace-selector-empty"],
    steps: [
      {
        apply: np("z", "c-from-every-a", `
          podSelector: {matchLabels: {pod: c}}
          ingress:
          - from:
            - namespaceSelector: {}
              podSelector: {matchLabels: {pod: a}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   X
          x/c   .   .   .   .   .   .   .   .   X
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   X
          y/c   .   .   .   .   .   .   .   .   X
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   X
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "two peers in one rule are ORed",
    covers: ["peer-or", "peer-namespace-selector", "peer-pod-selector"],
    steps: [
      {
        apply: np("x", "a-from-y-or-b", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: y}}
            - podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "two rules in one policy: rules ORed, peers and ports within a rule ANDed",
    covers: ["rules-or", "port-number", "protocol-default-tcp"],
    steps: [
      {
        apply: np("x", "two-rules", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: b}}
            ports:
            - port: 80
          - from:
            - namespaceSelector: {matchLabels: {ns: z}}
            ports:
            - port: 81
        `),
        port: 80, protocol: "TCP", expected: XA_FROM_XB,
      },
      {
        port: 81, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      {
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "two policies selecting one pod: their rules add up; deleting one takes its rules away",
    covers: ["union", "policy-delete", "policy-create"],
    steps: [
      {
        apply: np("x", "a-from-b", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: b}}
        `) + np("x", "a-from-z", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: z}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      { delete: ["x/a-from-z"], port: 80, protocol: "TCP", expected: XA_FROM_XB },
    ],
  },
  {
    name: "policies in two namespaces; deleting them restores connectivity everywhere",
    covers: ["policy-delete", "pod-selector-empty"],
    steps: [
      {
        apply: X_DENY_ALL + np("z", "deny-all", `
          podSelector: {}
          policyTypes: [Ingress]
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   X   X   X
          x/b   X   .   X   .   .   .   X   X   X
          x/c   X   X   .   .   .   .   X   X   X
          y/a   X   X   X   .   .   .   X   X   X
          y/b   X   X   X   .   .   .   X   X   X
          y/c   X   X   X   .   .   .   X   X   X
          z/a   X   X   X   .   .   .   .   X   X
          z/b   X   X   X   .   .   .   X   .   X
          z/c   X   X   X   .   .   .   X   X   .
        `,
      },
      { delete: ["x/deny-all"], port: 80, protocol: "TCP", expected: Z_CLOSED },
      { delete: ["z/deny-all"], port: 80, protocol: "TCP", expected: ALL },
    ],
  },
  {
    name: "matchExpressions In, in the pod selector and in a peer",
    covers: ["expr-in"],
    steps: [
      {
        apply: np("x", "ab-from-c", `
          podSelector:
            matchExpressions:
            - {key: pod, operator: In, values: [a, b]}
          ingress:
          - from:
            - podSelector:
                matchExpressions:
                - {key: pod, operator: In, values: [c]}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   X   .   .   .   .   .   .   .
          y/b   X   X   .   .   .   .   .   .   .
          y/c   X   X   .   .   .   .   .   .   .
          z/a   X   X   .   .   .   .   .   .   .
          z/b   X   X   .   .   .   .   .   .   .
          z/c   X   X   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "matchExpressions NotIn, in the pod selector and in a namespace selector",
    covers: ["expr-notin"],
    steps: [
      {
        apply: np("x", "not-a-from-not-xy", `
          podSelector:
            matchExpressions:
            - {key: pod, operator: NotIn, values: [a]}
          ingress:
          - from:
            - namespaceSelector:
                matchExpressions:
                - {key: ns, operator: NotIn, values: [x, y]}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   .   .   .
          x/b   .   .   X   .   .   .   .   .   .
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   X   .   .   .   .   .   .
          y/b   .   X   X   .   .   .   .   .   .
          y/c   .   X   X   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "matchExpressions Exists, in the pod selector and in a namespace selector",
    covers: ["expr-exists", "peer-and"],
    steps: [
      {
        apply: np("y", "from-every-a", `
          podSelector:
            matchExpressions:
            - {key: pod, operator: Exists}
          ingress:
          - from:
            - namespaceSelector:
                matchExpressions:
                - {key: ns, operator: Exists}
              podSelector: {matchLabels: {pod: a}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   X   X   X   .   .   .
          x/c   .   .   .   X   X   X   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   X   .   X   .   .   .
          y/c   .   .   .   X   X   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   X   X   X   .   .   .
          z/c   .   .   .   X   X   X   .   .   .
        `,
      },
    ],
  },
  {
    name: "matchExpressions DoesNotExist; a pod losing its label becomes selected and a peer",
    covers: ["expr-doesnotexist", "pod-label-change"],
    steps: [
      {
        apply: np("z", "unlabelled-deny", `
          podSelector:
            matchExpressions:
            - {key: pod, operator: DoesNotExist}
          policyTypes: [Ingress]
        `) + np("z", "c-from-unlabelled", `
          podSelector: {matchLabels: {pod: c}}
          ingress:
          - from:
            - podSelector:
                matchExpressions:
                - {key: pod, operator: DoesNotExist}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   X
          x/b   .   .   .   .   .   .   .   .   X
          x/c   .   .   .   .   .   .   .   .   X
          y/a   .   .   .   .   .   .   .   .   X
          y/b   .   .   .   .   .   .   .   .   X
          y/c   .   .   .   .   .   .   .   .   X
          z/a   .   .   .   .   .   .   .   .   X
          z/b   .   .   .   .   .   .   .   .   X
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      {
        note: "z/b loses its pod label: now isolated by unlabelled-deny and a peer of c-from-unlabelled",
        label: [{ pod: "z/b", set: { pod: null } }],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   X   X
          x/b   .   .   .   .   .   .   .   X   X
          x/c   .   .   .   .   .   .   .   X   X
          y/a   .   .   .   .   .   .   .   X   X
          y/b   .   .   .   .   .   .   .   X   X
          y/c   .   .   .   .   .   .   .   X   X
          z/a   .   .   .   .   .   .   .   X   X
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   X   .
        `,
      },
      {
        label: [{ pod: "z/b", set: { pod: "b" } }],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   X
          x/b   .   .   .   .   .   .   .   .   X
          x/c   .   .   .   .   .   .   .   .   X
          y/a   .   .   .   .   .   .   .   .   X
          y/b   .   .   .   .   .   .   .   .   X
          y/c   .   .   .   .   .   .   .   .   X
          z/a   .   .   .   .   .   .   .   .   X
          z/b   .   .   .   .   .   .   .   .   X
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "matchLabels and several matchExpressions in one selector are ANDed",
    covers: ["expr-and-labels", "expr-in", "expr-notin", "peer-and"],
    steps: [
      {
        apply: np("x", "c-from-ya", `
          podSelector: {matchLabels: {pod: c}}
          ingress:
          - from:
            - namespaceSelector:
                matchLabels: {ns: y}
                matchExpressions:
                - {key: kubernetes.io/metadata.name, operator: In, values: [y, z]}
              podSelector:
                matchExpressions:
                - {key: pod, operator: In, values: [a, b]}
                - {key: pod, operator: NotIn, values: [b]}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   X   .   .   .   .   .   .
          x/b   .   .   X   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   X   .   .   .   .   .   .
          y/c   .   .   X   .   .   .   .   .   .
          z/a   .   .   X   .   .   .   .   .   .
          z/b   .   .   X   .   .   .   .   .   .
          z/c   .   .   X   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "egress to a namespaceSelector",
    covers: ["peer-namespace-selector", "types-explicit", "pod-selector-empty"],
    steps: [
      {
        apply: np("y", "egress-to-z", `
          podSelector: {}
          policyTypes: [Egress]
          egress:
          - to:
            - namespaceSelector: {matchLabels: {ns: z}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   X   X   .   X   X   .   .   .
          y/b   X   X   X   X   .   X   .   .   .
          y/c   X   X   X   X   X   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "a connection needs both the source's egress and the destination's ingress",
    covers: ["both-ends", "peer-and", "types-explicit", "policy-create"],
    steps: [
      {
        apply: np("x", "a-no-egress", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
        `) + np("y", "b-from-xa", `
          podSelector: {matchLabels: {pod: b}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: x}}
              podSelector: {matchLabels: {pod: a}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   X   X   X   X   X   X
          x/b   .   .   .   .   X   .   .   .   .
          x/c   .   .   .   .   X   .   .   .   .
          y/a   .   .   .   .   X   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   X   .   .   .   .
          z/a   .   .   .   .   X   .   .   .   .
          z/b   .   .   .   .   X   .   .   .   .
          z/c   .   .   .   .   X   .   .   .   .
        `,
      },
      {
        apply: np("x", "a-egress-to-yb", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress:
          - to:
            - namespaceSelector: {matchLabels: {ns: y}}
              podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   X   .   X   X   X   X
          x/b   .   .   .   .   X   .   .   .   .
          x/c   .   .   .   .   X   .   .   .   .
          y/a   .   .   .   .   X   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   X   .   .   .   .
          z/a   .   .   .   .   X   .   .   .   .
          z/b   .   .   .   .   X   .   .   .   .
          z/c   .   .   .   .   X   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "ingress ipBlock: one node's pod subnet",
    covers: ["ip-block"],
    steps: [
      {
        apply: np("x", "a-from-node-2-subnet", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - ipBlock: {cidr: "{{subnet:node-2}}"}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   X   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "ingress ipBlock with except: the cluster network minus a subnet and one pod",
    covers: ["ip-block", "ip-block-except", "udp"],
    steps: [
      {
        apply: np("y", "a-from-block", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - ipBlock:
                cidr: "{{network}}"
                except: ["{{subnet:node-3}}", "{{ip:x/b}}/32"]
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   X   .   .   .   .   .
          x/c   .   .   .   X   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   X   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   X   .   .   .   .   .
        `,
      },
      {
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   X   .   .   .   .   .
          x/c   .   .   .   X   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   X   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   X   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "egress ipBlock with except: the cluster network minus one node's subnet",
    covers: ["ip-block", "ip-block-except", "types-explicit"],
    steps: [
      {
        apply: np("x", "c-egress-block", `
          podSelector: {matchLabels: {pod: c}}
          policyTypes: [Egress]
          egress:
          - to:
            - ipBlock:
                cidr: "{{network}}"
                except: ["{{subnet:node-1}}"]
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   X   .   .   X   .   .   X   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "egress ipBlock peers ORed: one pod's /32 and one node's subnet",
    covers: ["ip-block", "peer-or"],
    steps: [
      {
        apply: np("x", "a-egress-blocks", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress:
          - to:
            - ipBlock: {cidr: "{{ip:z/c}}/32"}
            - ipBlock: {cidr: "{{subnet:node-2}}"}
        `),
        port: 81, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   X   X   .   X   X   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "named port (ingress) opens that port and protocol only",
    covers: ["named-port", "protocol-default-tcp"],
    steps: [
      {
        apply: np("x", "allow-serve-81-tcp", `
          podSelector: {}
          ingress:
          - ports:
            - port: serve-81-tcp
        `),
        port: 81, protocol: "TCP", expected: ALL,
      },
      { port: 80, protocol: "TCP", expected: X_CLOSED },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "named port with the wrong protocol opens nothing (serve-80-tcp/UDP, serve-81-udp/TCP)",
    covers: ["named-port-protocol", "named-port", "udp"],
    steps: [
      {
        apply: np("x", "mismatched-names", `
          podSelector: {}
          ingress:
          - ports:
            - port: serve-80-tcp
              protocol: UDP
            - port: serve-81-udp
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
      { port: 80, protocol: "UDP", expected: X_CLOSED },
      { port: 81, protocol: "TCP", expected: X_CLOSED },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "named UDP port opens UDP on that port only",
    covers: ["named-port", "udp"],
    steps: [
      {
        apply: np("x", "allow-serve-80-udp", `
          podSelector: {}
          ingress:
          - ports:
            - port: serve-80-udp
              protocol: UDP
        `),
        port: 80, protocol: "UDP", expected: ALL,
      },
      { port: 80, protocol: "TCP", expected: X_CLOSED },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "endPort range, then the range updated in place",
    covers: ["end-port", "policy-update", "protocol-default-tcp"],
    steps: [
      {
        apply: np("x", "range", `
          podSelector: {}
          ingress:
          - ports:
            - port: 81
              endPort: 90
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
      { port: 81, protocol: "TCP", expected: ALL },
      {
        apply: np("x", "range", `
          podSelector: {}
          ingress:
          - ports:
            - port: 79
              endPort: 80
        `),
        port: 80, protocol: "TCP", expected: ALL,
      },
      { port: 81, protocol: "TCP", expected: X_CLOSED },
      {
        apply: np("x", "range", `
          podSelector: {}
          ingress:
          - ports:
            - port: 80
              endPort: 81
        `),
        port: 81, protocol: "TCP", expected: ALL,
      },
      { port: 80, protocol: "TCP", expected: ALL },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "UDP-only rule: UDP opens, TCP stays isolated",
    covers: ["udp", "port-number"],
    steps: [
      {
        apply: np("x", "udp-80", `
          podSelector: {}
          ingress:
          - ports:
            - port: 80
              protocol: UDP
        `),
        port: 80, protocol: "UDP", expected: ALL,
      },
      { port: 80, protocol: "TCP", expected: X_CLOSED },
      { port: 81, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "SCTP-only ingress rule (no SCTP in this kernel): x stays isolated for TCP and UDP",
    covers: ["sctp"],
    steps: [
      {
        apply: np("x", "sctp-only", `
          podSelector: {}
          ingress:
          - ports:
            - port: 80
              protocol: SCTP
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED, fromNodes: OWN_NODES_X,
      },
      { port: 80, protocol: "UDP", expected: X_CLOSED },
    ],
  },
  {
    name: "SCTP and UDP egress rules: x/a sends UDP/81 only",
    covers: ["sctp", "udp", "types-explicit"],
    steps: [
      {
        apply: np("x", "a-egress-sctp-udp", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress:
          - ports:
            - port: 81
              protocol: SCTP
          - ports:
            - port: 81
              protocol: UDP
        `),
        port: 81, protocol: "TCP", expected: XA_SENDS_NOTHING,
      },
      { port: 81, protocol: "UDP", expected: ALL },
      { port: 80, protocol: "UDP", expected: XA_SENDS_NOTHING },
    ],
  },
  {
    name: "egress named ports resolve against the destination pod, protocol included",
    covers: ["named-port-egress", "named-port-protocol", "protocol-default-tcp"],
    steps: [
      {
        apply: np("x", "a-egress-named", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress:
          - ports:
            - port: serve-81-tcp
            - port: serve-80-udp
        `),
        port: 81, protocol: "TCP", expected: ALL,
      },
      { port: 80, protocol: "TCP", expected: XA_SENDS_NOTHING },
      { port: 80, protocol: "UDP", expected: XA_SENDS_NOTHING },
      { port: 81, protocol: "UDP", expected: XA_SENDS_NOTHING },
    ],
  },
  {
    name: "egress to a namespace on UDP/80 only",
    covers: ["udp", "peer-namespace-selector", "rules-or"],
    steps: [
      {
        apply: np("x", "a-egress-y-udp", `
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress:
          - to:
            - namespaceSelector: {matchLabels: {ns: y}}
            ports:
            - port: 80
              protocol: UDP
        `),
        port: 80, protocol: "UDP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   X   .   .   .   X   X   X
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      { port: 80, protocol: "TCP", expected: XA_SENDS_NOTHING },
    ],
  },
  {
    name: "deny-all both ways in every namespace: only self and the pod's own node",
    covers: ["pod-to-self", "node-to-pod", "types-explicit", "pod-selector-empty"],
    steps: [
      {
        apply: ["x", "y", "z"].map((ns) => np(ns, "lockdown", `
          podSelector: {}
          policyTypes: [Ingress, Egress]
        `)).join(""),
        port: 80, protocol: "TCP", expected: ONLY_SELF, fromNodes: OWN_NODES_ALL,
      },
      { port: 81, protocol: "UDP", expected: ONLY_SELF, fromNodes: OWN_NODES_ALL },
    ],
  },
  {
    name: "pod label added and removed: the pod becomes selected, then not",
    covers: ["pod-label-change", "match-labels"],
    steps: [
      {
        apply: np("x", "locked", `
          podSelector: {matchLabels: {role: locked}}
          policyTypes: [Ingress]
        `),
        port: 80, protocol: "TCP", expected: ALL,
      },
      {
        label: [{ pod: "x/b", set: { role: "locked" } }],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   X   .   .   .   .   .   .   .
          y/a   .   X   .   .   .   .   .   .   .
          y/b   .   X   .   .   .   .   .   .   .
          y/c   .   X   .   .   .   .   .   .   .
          z/a   .   X   .   .   .   .   .   .   .
          z/b   .   X   .   .   .   .   .   .   .
          z/c   .   X   .   .   .   .   .   .   .
        `,
      },
      { label: [{ pod: "x/b", set: { role: null } }], port: 80, protocol: "TCP", expected: ALL },
    ],
  },
  {
    name: "pod label changes add and remove peers (remote node, then same node)",
    covers: ["pod-label-change", "peer-and", "peer-namespace-selector-empty"],
    steps: [
      {
        apply: np("y", "a-from-friends", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - namespaceSelector: {}
              podSelector: {matchLabels: {role: friend}}
        `),
        port: 80, protocol: "TCP", expected: YA_CLOSED,
      },
      {
        label: [{ pod: "z/c", set: { role: "friend" } }],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   X   .   .   .   .   .
          x/b   .   .   .   X   .   .   .   .   .
          x/c   .   .   .   X   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   X   .   .   .   .   .
          y/c   .   .   .   X   .   .   .   .   .
          z/a   .   .   .   X   .   .   .   .   .
          z/b   .   .   .   X   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
      {
        label: [{ pod: "z/c", set: { role: "enemy" } }, { pod: "x/a", set: { role: "friend" } }],
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   .   .   .   X   .   .   .   .   .
          x/c   .   .   .   X   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   X   .   .   .   .   .
          y/c   .   .   .   X   .   .   .   .   .
          z/a   .   .   .   X   .   .   .   .   .
          z/b   .   .   .   X   .   .   .   .   .
          z/c   .   .   .   X   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "namespace labels changed: peers follow the namespaceSelector",
    covers: ["namespace-label-change", "peer-namespace-selector"],
    steps: [
      {
        apply: np("x", "from-blue", `
          podSelector: {}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {team: blue}}
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
      {
        label: [{ ns: "z", set: { team: "blue" } }],
        port: 80, protocol: "TCP",
        expected: `
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
        `,
      },
      {
        label: [{ ns: "z", set: { team: null } }, { ns: "y", set: { team: "blue" } }],
        port: 80, protocol: "TCP",
        expected: `
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
        `,
      },
    ],
  },
  {
    name: "policy updated in place: peers, then the selected pod, then the direction",
    covers: ["policy-update", "peer-pod-selector", "types-explicit"],
    steps: [
      {
        apply: np("x", "moving", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP", expected: XA_FROM_XB,
      },
      {
        apply: np("x", "moving", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: c}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   X   .   .   .   .   .   .   .   .
          y/b   X   .   .   .   .   .   .   .   .
          y/c   X   .   .   .   .   .   .   .   .
          z/a   X   .   .   .   .   .   .   .   .
          z/b   X   .   .   .   .   .   .   .   .
          z/c   X   .   .   .   .   .   .   .   .
        `,
      },
      {
        apply: np("x", "moving", `
          podSelector: {matchLabels: {pod: b}}
          ingress:
          - from:
            - podSelector: {matchLabels: {pod: c}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   X   .   .   .   .   .   .   .
          x/b   .   .   .   .   .   .   .   .   .
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   X   .   .   .   .   .   .   .
          y/b   .   X   .   .   .   .   .   .   .
          y/c   .   X   .   .   .   .   .   .   .
          z/a   .   X   .   .   .   .   .   .   .
          z/b   .   X   .   .   .   .   .   .   .
          z/c   .   X   .   .   .   .   .   .   .
        `,
      },
      {
        apply: np("x", "moving", `
          podSelector: {matchLabels: {pod: b}}
          policyTypes: [Egress]
          egress:
          - to:
            - podSelector: {matchLabels: {pod: c}}
        `),
        port: 80, protocol: "TCP",
        expected: `
          //   x/a x/b x/c y/a y/b y/c z/a z/b z/c
          x/a   .   .   .   .   .   .   .   .   .
          x/b   X   .   .   X   X   X   X   X   X
          x/c   .   .   .   .   .   .   .   .   .
          y/a   .   .   .   .   .   .   .   .   .
          y/b   .   .   .   .   .   .   .   .   .
          y/c   .   .   .   .   .   .   .   .   .
          z/a   .   .   .   .   .   .   .   .   .
          z/b   .   .   .   .   .   .   .   .   .
          z/c   .   .   .   .   .   .   .   .   .
        `,
      },
    ],
  },
  {
    name: "a peer pod deleted and created again on another node (new address) keeps access",
    covers: ["pod-lifecycle", "peer-and"],
    steps: [
      {
        apply: np("x", "a-from-yb", `
          podSelector: {matchLabels: {pod: a}}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {ns: y}}
              podSelector: {matchLabels: {pod: b}}
        `),
        port: 80, protocol: "TCP", expected: XA_FROM_YB,
      },
      { note: "y/b moves to node-3", recreatePod: [{ pod: "y/b", node: "node-3" }], port: 80, protocol: "TCP", expected: XA_FROM_YB },
      { note: "y/b back home on node-2", recreatePod: [{ pod: "y/b", node: "node-2" }], port: 80, protocol: "TCP", expected: XA_FROM_YB },
    ],
  },
  {
    name: "a selected pod deleted and created again (other node, then home) is isolated from the start",
    covers: ["pod-lifecycle", "node-to-pod"],
    steps: [
      {
        apply: np("z", "deny-all", `
          podSelector: {}
          policyTypes: [Ingress]
        `),
        port: 80, protocol: "TCP", expected: Z_CLOSED,
      },
      {
        note: "z/a moves to node-2",
        recreatePod: [{ pod: "z/a", node: "node-2" }],
        port: 80, protocol: "TCP", expected: Z_CLOSED,
        fromNodes: [{ node: "node-2", to: "z/a", expect: "." }],
      },
      {
        note: "z/a back home on node-1",
        recreatePod: [{ pod: "z/a", node: "node-1" }],
        port: 80, protocol: "TCP", expected: Z_CLOSED,
        fromNodes: [{ node: "node-1", to: "z/a", expect: "." }],
      },
    ],
  },
  {
    name: "a namespace created with matching labels gets access; relabelled; deleted",
    covers: ["namespace-lifecycle", "namespace-label-change", "peer-namespace-selector"],
    steps: [
      {
        apply: np("x", "from-team-new", `
          podSelector: {}
          ingress:
          - from:
            - namespaceSelector: {matchLabels: {team: new}}
        `),
        port: 80, protocol: "TCP", expected: X_CLOSED,
      },
      {
        createNamespace: [{ name: "w", labels: { "kubernetes.io/metadata.name": "w", ns: "w", team: "new" }, pods: [{ name: "a", node: "node-2", labels: { pod: "a" } }] }],
        port: 80, protocol: "TCP", expected: X_CLOSED,
        extra: [
          { from: "w/a", to: "x/a", expect: "." },
          { from: "w/a", to: "x/b", expect: "." },
          { from: "w/a", to: "x/c", expect: "." },
          { from: "x/a", to: "w/a", expect: "." },
          { from: "y/a", to: "w/a", expect: "." },
        ],
      },
      {
        label: [{ ns: "w", set: { team: "old" } }],
        port: 80, protocol: "TCP", expected: X_CLOSED,
        extra: [
          { from: "w/a", to: "x/a", expect: "X" },
          { from: "w/a", to: "x/b", expect: "X" },
          { from: "w/a", to: "y/a", expect: "." },
        ],
      },
      { deleteNamespace: ["w"], port: 80, protocol: "TCP", expected: X_CLOSED },
    ],
  },
];

/** Scenario steps with their 1-based indices, for messages. */
export function stepTitle(sc: Scenario<string>, i: number): string {
  const s = sc.steps[i] as Step;
  return `${sc.name} — step ${i + 1}/${sc.steps.length} (${s.protocol === "ICMP" ? "ICMP" : `${s.protocol}/${s.port}`}${s.note ? `; ${s.note}` : ""})`;
}
