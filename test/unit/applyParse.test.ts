import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.js";
import { KINDS, checkRegistry, defineKind, formatLabelSelector, kindFor, namespaceKind, networkPolicyKind, podKind, resolveKindName, validateObject } from "../../src/config/resourceKinds.js";
import { type NetworkPolicyObject, namespaceObject } from "../../src/config/k8sSchemas.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { parseSelectorText, parseTargets, selectorMatches } from "../../src/ctl/apply.js";
import { formatProblem, parseManifests } from "../../src/ctl/manifests.js";
import { formatTable, humanDuration, renderTable } from "../../src/ctl/printers.js";

const parse = (text: string, namespace?: string, validate = true) => parseManifests([{ name: "f.yaml", text }], { namespace, validate });
const errors = (text: string, namespace?: string) => parse(text, namespace).problems.map(formatProblem);

const NP = (name: string, extra = "") => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ${name}
${extra}spec:
  podSelector: {}
`;

describe("parseManifests: what kubectl accepts", () => {
  test("multi-document YAML with comments, leading and empty documents", () => {
    const r = parse(`# a comment before anything
---
${NP("a")}
---
# only a comment
---
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}   # trailing comment
...
`);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(
      r.objects.map((o) => `${o.kind.kind} ${o.namespace ?? "-"}/${o.name}`),
      ["NetworkPolicy default/a", "Namespace -/prod"],
    );
  });

  test("JSON, and a kind: List with items", () => {
    const json = JSON.stringify({ apiVersion: "v1", kind: "List", items: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "a" } }, { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "np", namespace: "a" }, spec: { podSelector: {} } }] });
    const r = parse(json);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.objects.map((o) => o.where), ["document 1 item 1 (Namespace a)", "document 1 item 2 (NetworkPolicy a/np)"]);
    const typed = parse(JSON.stringify({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicyList", items: [JSON.parse(JSON.stringify({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "x" }, spec: { podSelector: {} } }))] }));
    assert.equal(typed.objects.length, 1);
  });

  test("defaults are filled as the API server fills them; a Namespace carries its name label", () => {
    const r = parse(`${NP("a").replace("  podSelector: {}\n", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]\n")}---
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: x, kubernetes.io/metadata.name: wrong}}
`);
    assert.deepEqual(r.problems, []);
    const np = r.objects[0]?.object as unknown as { metadata: { namespace: string }; spec: { ingress: { ports: object[] }[] } };
    assert.equal(np.metadata.namespace, "default");
    assert.deepEqual(np.spec.ingress[0]?.ports, [{ protocol: "TCP", port: 80 }]);
    assert.deepEqual(r.objects[1]?.object.metadata.labels, { team: "x", "kubernetes.io/metadata.name": "prod" });
  });

  test("-n sets the namespace of namespaced objects that name none; a different one is an error, as with kubectl", () => {
    const r = parse(`${NP("a")}---\n${NP("b", "  namespace: x\n")}---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n`, "x");
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.objects.map((o) => o.namespace), ["x", "x", undefined]);
    assert.deepEqual(errors(NP("b", "  namespace: y\n"), "x"), [
      `error: document 1 (NetworkPolicy y/b): metadata.namespace: the namespace from the provided object "y" does not match the namespace "x". You must pass '--namespace=y' to perform this operation.`,
    ]);
  });

  test("a cluster-scoped object loses a namespace the file gives it", () => {
    const r = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "c");
    assert.deepEqual(r.problems, []);
    assert.equal(r.objects[0]?.namespace, undefined);
    assert.equal("namespace" in (r.objects[0]?.object.metadata ?? {}), false);
  });

  test("every invalid object is reported with document index, kind, namespace/name, field path and reason", () => {
    const text = `${NP("ok", "  namespace: x\n")}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/33}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo, namespace: x}
spec:
  podSelecter: {}
`;
    assert.deepEqual(errors(text), [
      "error: document 2 (NetworkPolicy x/deny-all): spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR such as 10.0.0.0/8",
      "error: document 3 (NetworkPolicy x/typo): spec.podSelector: is required (object)",
      "error: document 3 (NetworkPolicy x/typo): spec.podSelecter: unknown field",
    ]);
    assert.equal(parse(text).objects.length, 1, "the valid one is still parsed (the caller refuses the batch)");
  });

  test("null as the API server reads it: `podSelector:` selects every pod; a null peer selector, list or map is absent", () => {
    // The shape of upstream's own manifests: `podSelector:` with nothing after it.
    const r = parse(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: x
  labels:
spec:
  podSelector:
  policyTypes:
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: a}
      podSelector:
    - podSelector:
        matchLabels:
        matchExpressions:
        - {key: app, operator: Exists, values: }
    ports:
  egress:
`);
    assert.deepEqual(r.problems, []);
    const np = r.objects[0]?.object as NetworkPolicyObject;
    assert.deepEqual(np.spec, { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "a" } } }, { podSelector: { matchExpressions: [{ key: "app", operator: "Exists" }] } }] }] });
    assert.equal("labels" in np.metadata, false);
    const ir = networkPolicyToIr(np);
    assert.deepEqual([ir.subject.pods, ir.ingress !== undefined, ir.egress !== undefined], [{}, true, false], "every pod of x, isolated for ingress (no egress rules: Ingress only)");
    // A peer that is nothing but a null selector is an empty peer, for the API server too.
    assert.deepEqual(errors(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector:
  ingress:
  - from:
    - podSelector:
`), ["error: document 1 (NetworkPolicy x/p): spec.ingress[0].from[0]: must specify podSelector, namespaceSelector or ipBlock"]);
    // Absent is not null: the spec still needs its podSelector.
    assert.deepEqual(errors("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n"), ["error: document 1 (NetworkPolicy default/p): spec.podSelector: is required (object)"]);
  });

  test("unknown kinds name their apiVersion and kind; a known kind in the wrong version says which version Sluice serves", () => {
    assert.deepEqual(errors("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"), [
      'error: document 1 (Widget w): no kind "Widget" is registered for version "example.com/v1" (known kinds: Namespace (v1), Pod (v1), NetworkPolicy (networking.k8s.io/v1), ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2), GlobalNetworkPolicy (sluice.dev/v1), NetworkSet (sluice.dev/v1), GlobalNetworkSet (sluice.dev/v1), Node (v1))',
    ]);
    assert.deepEqual(errors("apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {}\n"), [
      'error: document 1 (GlobalNetworkPolicy g): no kind "GlobalNetworkPolicy" is registered for version "crd.projectcalico.org/v1" (Sluice serves GlobalNetworkPolicy as sluice.dev/v1)',
    ]);
    assert.deepEqual(errors("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: old}\nspec: {podSelector: {}}\n"), [
      'error: document 1 (NetworkPolicy old): no kind "NetworkPolicy" is registered for version "extensions/v1beta1" (Sluice serves NetworkPolicy as networking.k8s.io/v1)',
    ]);
  });

  test("missing apiVersion/kind, non-objects and YAML syntax errors", () => {
    assert.deepEqual(errors("metadata: {name: a}\n"), ["error: document 1 (? a): apiVersion: is required", "error: document 1 (? a): kind: is required"]);
    assert.deepEqual(errors("- a\n- b\n"), ["error: document 1: expected an object with apiVersion and kind, found a list"]);
    assert.deepEqual(errors("just text\n"), ['error: document 1: expected an object with apiVersion and kind, found a string ("just text")']);
    const syntax = errors(`${NP("a")}---\nkind: [\n`);
    assert.equal(syntax.length, 1);
    assert.match(syntax[0] as string, /^error: document 2: not valid YAML: /);
    const dup = errors("apiVersion: v1\nkind: Namespace\nkind: Namespace\nmetadata: {name: a}\n");
    assert.match(dup[0] as string, /^error: document 1: not valid YAML: Map keys must be unique/);
  });

  test("several files: messages name the file", () => {
    const r = parseManifests(
      [
        { name: "a.yaml", text: NP("a") },
        { name: "b.yaml", text: "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n" },
      ],
      { validate: true },
    );
    assert.deepEqual(r.problems.map(formatProblem), ["error: b.yaml: document 1 (Namespace Bad): metadata.name: must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)"]);
  });

  test("the same object twice: the later one wins, with a warning", () => {
    const r = parse(`${NP("a")}---\n${NP("a").replace("podSelector: {}", "podSelector: {matchLabels: {x: y}}")}`);
    assert.equal(r.objects.length, 1);
    assert.deepEqual(r.objects[0]?.object.metadata.name, "a");
    assert.match(r.objects[0]?.where ?? "", /^document 2/);
    assert.deepEqual(r.warnings, ["warning: document 1 (NetworkPolicy default/a) is replaced by document 2 (NetworkPolicy default/a), later in the input"]);
  });

  test("without validation (delete -f) only kind, name and namespace matter", () => {
    const r = parse("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {bogus: 1}\n", "x", false);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.objects.map((o) => [o.namespace, o.name]), [["x", "a"]]);
    assert.deepEqual(parse("apiVersion: v1\nkind: Namespace\nmetadata: {}\n", undefined, false).problems.map(formatProblem), ["error: document 1 (Namespace <no name>): metadata.name: is required"]);
  });

  test("an empty input has no objects and no problems", () => {
    assert.deepEqual(parse(""), { objects: [], problems: [], warnings: [] });
    assert.deepEqual(parse("# nothing\n---\n"), { objects: [], problems: [], warnings: [] });
  });
});

describe("kind registry", () => {
  test("kubectl's names resolve, case-insensitively", () => {
    for (const n of ["networkpolicy", "networkpolicies", "netpol", "NetworkPolicy", "networkpolicies.networking.k8s.io", "networkpolicy.networking.k8s.io"]) assert.equal(resolveKindName(n), networkPolicyKind, n);
    for (const n of ["ns", "namespace", "namespaces", "Namespace"]) assert.equal(resolveKindName(n), namespaceKind, n);
    for (const n of ["po", "pod", "pods"]) assert.equal(resolveKindName(n), podKind, n);
    assert.equal(resolveKindName("netpols"), undefined);
    assert.equal(kindFor("networking.k8s.io/v1", "NetworkPolicy"), networkPolicyKind);
    assert.equal(kindFor("v1", "NetworkPolicy"), undefined);
  });

  test("a new kind is one entry; clashes of plural or name are refused", () => {
    const widget = defineKind({ group: "sluice.dev", version: "v1", kind: "GlobalWidget", plural: "globalwidgets", singular: "globalwidget", namespaced: false, shortNames: ["gw"], schema: namespaceObject as never });
    assert.doesNotThrow(() => checkRegistry([...KINDS, widget]));
    assert.equal(resolveKindName("gw", [...KINDS, widget]), widget);
    assert.throws(() => checkRegistry([...KINDS, { ...widget, shortNames: ["netpol"] }]), /name "netpol" of sluice.dev\/v1\/GlobalWidget is already used by networking.k8s.io\/v1\/NetworkPolicy/);
    assert.throws(() => checkRegistry([...KINDS, { ...widget, plural: "pods" }]), /plural "pods"/);
    assert.throws(() => checkRegistry([...KINDS, { ...widget, plural: "workloadendpoints" }]), /plural "workloadendpoints"/);
  });

  test("validateObject normalises a Namespace and reports record keys readably", () => {
    const ok = validateObject(namespaceKind, { apiVersion: "v1", kind: "Namespace", metadata: { name: "a" } });
    assert.ok(ok.ok);
    assert.deepEqual(ok.object.metadata.labels, { "kubernetes.io/metadata.name": "a" });
    const bad = validateObject(namespaceKind, { apiVersion: "v1", kind: "Namespace", metadata: { name: "a", labels: { "a b": "c" } } });
    assert.ok(!bad.ok);
    assert.equal(bad.issues[0]?.path, "metadata.labels");
    assert.match(bad.issues[0]?.message ?? "", /^key "a b": must be a label key/);
  });

  test("label selectors print as kubectl prints them", () => {
    assert.equal(formatLabelSelector({}), "<none>");
    assert.equal(formatLabelSelector({ matchLabels: { b: "2", a: "1" }, matchExpressions: [{ key: "c", operator: "NotIn", values: ["y", "x"] }, { key: "d", operator: "DoesNotExist" }, { key: "aa", operator: "Exists" }] }), "a=1,aa,b=2,c notin (x,y),!d");
  });
});

describe("get/delete arguments", () => {
  test("TYPE NAME..., TYPE/NAME and TYPE1,TYPE2", () => {
    assert.deepEqual(parseTargets(["netpol", "a", "b"], "t").names.map((n) => [n.kind.kind, n.name]), [["NetworkPolicy", "a"], ["NetworkPolicy", "b"]]);
    assert.deepEqual(parseTargets(["ns/a", "netpol/b"], "t").names.map((n) => [n.kind.kind, n.name]), [["Namespace", "a"], ["NetworkPolicy", "b"]]);
    assert.deepEqual(parseTargets(["ns,netpol"], "t").kinds.map((k) => k.kind), ["Namespace", "NetworkPolicy"]);
    assert.throws(() => parseTargets(["widgets"], "t"), (e: unknown) => e instanceof ConfigError && /doesn't have a resource type "widgets"/.test(e.message));
    assert.throws(() => parseTargets([], "t"), ConfigError);
    assert.throws(() => parseTargets(["ns,netpol", "a"], "t"), ConfigError);
  });

  test("-l selectors", () => {
    const s = parseSelectorText("app=web,tier in (a, b),!legacy,env!=prod,team");
    assert.equal(selectorMatches(s, { app: "web", tier: "a", team: "x" }), true);
    assert.equal(selectorMatches(s, { app: "web", tier: "c", team: "x" }), false);
    assert.equal(selectorMatches(s, { app: "web", tier: "a", team: "x", legacy: "" }), false);
    assert.equal(selectorMatches(s, { app: "web", tier: "b", team: "x", env: "prod" }), false);
    assert.equal(selectorMatches(parseSelectorText("a notin (x)"), {}), true);
    assert.equal(selectorMatches(parseSelectorText("a==1"), { a: "1" }), true);
    assert.throws(() => parseSelectorText("a=b=c"), ConfigError);
  });
});

describe("printing", () => {
  test("ages read like kubectl's", () => {
    const s = 1000;
    const cases: [number, string][] = [[-5 * s, "<invalid>"], [0, "0s"], [59 * s, "59s"], [119 * s, "119s"], [125 * s, "2m5s"], [600 * s, "10m"], [179 * 60 * s, "179m"], [3 * 3600 * s + 60 * s, "3h1m"], [20 * 3600 * s, "20h"], [50 * 3600 * s, "2d2h"], [30 * 86400 * s, "30d"], [(3 * 365 + 10) * 86400 * s, "3y10d"]];
    for (const [ms, text] of cases) assert.equal(humanDuration(ms), text, String(ms));
  });

  test("tables pad each column to its widest cell plus three spaces", () => {
    assert.equal(formatTable([["NAME", "AGE"], ["a-long-name", "5s"]]), "NAME          AGE\na-long-name   5s\n");
    const np = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "web", namespace: "x", creationTimestamp: "2025-01-01T00:00:00Z" }, spec: { podSelector: { matchLabels: { app: "web" } } } };
    const now = Date.parse("2025-01-01T00:00:30Z");
    assert.equal(renderTable(networkPolicyKind as never, [np], { allNamespaces: true, wide: false, withKind: false, now }), "NAMESPACE   NAME   POD-SELECTOR   AGE\nx           web    app=web        30s\n");
    assert.equal(renderTable(networkPolicyKind as never, [np], { allNamespaces: false, wide: false, withKind: true, now }), "NAME                                  POD-SELECTOR   AGE\nnetworkpolicy.networking.k8s.io/web   app=web        30s\n");
  });
});
