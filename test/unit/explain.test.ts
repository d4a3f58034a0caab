/** `sluicectl explain`'s pure parts: the port/protocol text, ends, verdicts, the output forms. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.js";
import { networkPolicyObject } from "../../src/config/k8sSchemas.js";
import { clusterNetworkPolicyObject } from "../../src/config/policySchemas.js";
import { Explainer, explanationJson, formatExplanation } from "../../src/ctl/explain.js";
import { renderMatrixOutput } from "../../src/ctl/matrixOutput.js";
import type { PodEndpoint } from "../../src/model/endpoint.js";
import { buildPolicyModel } from "../../src/policy/model.js";
import { parseConnectionSpec, parseProbeSpec } from "../../src/sandbox/probe.js";

const SRC = "test";

describe("--port / --proto", () => {
  test("port texts and protocol names", () => {
    assert.deepEqual(parseConnectionSpec(undefined, undefined, SRC), { port: 80, protocol: "TCP" });
    assert.deepEqual(parseConnectionSpec("81/udp", undefined, SRC), { port: 81, protocol: "UDP" });
    assert.deepEqual(parseConnectionSpec("53", "udp", SRC), { port: 53, protocol: "UDP" });
    assert.deepEqual(parseConnectionSpec("9000/SCTP", undefined, SRC), { port: 9000, protocol: "SCTP" });
    assert.deepEqual(parseConnectionSpec("icmp", undefined, SRC), { port: 0, protocol: "ICMP" });
    assert.deepEqual(parseConnectionSpec(undefined, "ICMP", SRC), { port: 0, protocol: "ICMP" });
    assert.deepEqual(parseConnectionSpec("ICMP", "icmp", SRC), { port: 0, protocol: "ICMP" });
  });

  test("bad texts name the flag and the reason", () => {
    const bad = (port: string | undefined, proto: string | undefined, re: RegExp): void =>
      assert.throws(() => parseConnectionSpec(port, proto, SRC), (e: unknown) => e instanceof ConfigError && re.test(e.message), `${port} ${proto}`);
    bad("80/XTP", undefined, /--port: "80\/XTP": the protocol must be TCP, UDP or SCTP/);
    bad("0", undefined, /--port: "0" must be PORT/);
    bad("70000/TCP", undefined, /--port: "70000\/TCP" must be PORT/);
    bad("http", undefined, /--port: "http" must be PORT/);
    bad(undefined, "GRE", /--proto: "GRE" must be TCP, UDP, SCTP or ICMP/);
    bad("80/TCP", "UDP", /--proto: "UDP" conflicts with --port 80\/TCP/);
    bad("80", "ICMP", /--port: "80": ICMP has no port/);
    assert.throws(() => parseProbeSpec("80/SCTP", undefined, SRC, false), /--port: SCTP cannot be probed here: this kernel has no SCTP sockets/);
    assert.throws(() => parseProbeSpec(undefined, "sctp", SRC, false), /--proto: SCTP cannot be probed here/);
    assert.deepEqual(parseProbeSpec("80/SCTP", undefined, SRC, true), { port: 80, protocol: "SCTP" });
  });
});

describe("explain over a policy model", () => {
  const ep = (namespace: string, pod: string, ip: string, extra: Partial<PodEndpoint> = {}): PodEndpoint => ({ namespace, pod, node: "node-1", hostIface: `slc-${namespace}-${pod}`, ips: [ip, `fd00::${ip.split(".")[3]}`], labels: { app: pod }, ports: [], ...extra });
  const deny = networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "deny-in", namespace: "x" }, spec: { podSelector: { matchLabels: { app: "b" } }, policyTypes: ["Ingress"] } });
  const model = buildPolicyModel({
    endpoints: [ep("x", "a", "10.244.1.2"), ep("x", "b", "10.244.1.3"), ep("y", "c", "10.244.2.2"), ep("y", "u", "10.244.2.3", { metadataKnown: false })],
    namespaces: [
      { name: "x", labels: { "kubernetes.io/metadata.name": "x" } },
      { name: "y", labels: { "kubernetes.io/metadata.name": "y" } },
    ],
    networkPolicies: [deny],
    objects: { NetworkPolicy: [deny] },
  });
  const ex = new Explainer(model, { sctpSupported: false });
  const tcp80 = { port: 80, protocol: "TCP" as const };

  test("ends: ns/pod, an address (a pod's or not), a pod's address of the asked family; clear errors", () => {
    assert.deepEqual([ex.resolve("x/a", 4, "FROM").name, ex.resolve("x/a", 4, "FROM").address], ["x/a", "10.244.1.2"]);
    assert.equal(ex.resolve("x/a", 6, "FROM").address, "fd00::2");
    assert.equal(ex.resolve("10.244.1.3", 4, "TO").name, "x/b");
    const outside = ex.resolve("203.0.113.9", 4, "TO");
    assert.deepEqual([outside.name, outside.pod], ["203.0.113.9", undefined]);
    assert.throws(() => ex.resolve("x/zz", 4, "TO"), /TO: no pod x\/zz with an endpoint in the datastore \(pods of x: a, b\)/);
    assert.throws(() => ex.resolve("q/a", 4, "TO"), /no pods in namespace q/);
    assert.throws(() => ex.resolve("x/a/b", 4, "TO"), /must be <namespace>\/<pod> or an IP address/);
  });

  test("verdicts per direction: isolated ingress denies; an address has no policy; a pod reaches itself; unknown metadata is isolated", () => {
    const d = ex.explain(ex.resolve("x/a", 4, "FROM"), ex.resolve("x/b", 4, "TO"), tcp80);
    assert.deepEqual([d.allowed, d.egress.allowed, d.ingress.allowed, d.ingress.of], [false, true, false, "x/b"]);
    assert.ok(d.ingress.path.length > 0 && /Deny$/.test(d.ingress.path.at(-1)?.text ?? ""), JSON.stringify(d.ingress.path));
    const text = formatExplanation(d);
    assert.match(text, /^x\/a \(10\.244\.1\.2\) -> x\/b \(10\.244\.1\.3\) 80\/TCP: Deny\negress of x\/a:\n {2}.*Allow\ningress of x\/b:\n {2}.*Deny\n$/);
    const out = ex.explain(ex.resolve("x/b", 4, "FROM"), ex.resolve("203.0.113.9", 4, "TO"), { port: 0, protocol: "ICMP" });
    assert.equal(out.allowed, true);
    assert.match(formatExplanation(out), /-> 203\.0\.113\.9 ICMP: Allow\n[^]*ingress of 203\.0\.113\.9: not a pod, no policy\n$/);
    const j = explanationJson(out, ["w"]) as { verdict: string; ingress: { of: unknown; allowedBy: unknown; path: unknown[] }; to: { pod: boolean }; warnings: string[] };
    assert.deepEqual([j.verdict, j.ingress.of, j.ingress.allowedBy, j.ingress.path, j.to.pod, j.warnings], ["Allow", null, null, [], false, ["w"]]);
    const self = ex.explain(ex.resolve("x/b", 4, "FROM"), ex.resolve("x/b", 4, "TO"), tcp80);
    assert.deepEqual([self.allowed, self.hairpin, self.ingress.path.map((p) => p.text)], [true, false, ["[Self] to itself: Allow"]]);
    const unknown = ex.explain(ex.resolve("x/a", 4, "FROM"), ex.resolve("y/u", 4, "TO"), tcp80);
    assert.deepEqual([unknown.allowed, unknown.ingress.allowed], [false, false]);
  });

  test("--hairpin: a pod through a Service back to itself is judged by the cluster tiers, not by NetworkPolicy", () => {
    const base = networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "deny-in", namespace: "x" }, spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } });
    const cnp = clusterNetworkPolicyObject.parse({
      apiVersion: "policy.networking.k8s.io/v1alpha2",
      kind: "ClusterNetworkPolicy",
      metadata: { name: "no-self-81" },
      spec: { tier: "Baseline", priority: 1, subject: { namespaces: {} }, ingress: [{ name: "from-x", action: "Deny", from: [{ namespaces: { matchLabels: { "kubernetes.io/metadata.name": "x" } } }], protocols: [{ tcp: { destinationPort: { number: 81 } } }] }] },
    });
    const m = buildPolicyModel({ endpoints: model.endpoints, namespaces: model.namespaces, networkPolicies: [base], objects: { NetworkPolicy: [base], ClusterNetworkPolicy: [cnp] } });
    const e = new Explainer(m, { sctpSupported: false });
    const a = (): ReturnType<Explainer["resolve"]> => e.resolve("x/a", 4, "FROM");
    const open = e.explain(a(), a(), tcp80, { hairpin: true });
    assert.equal(open.allowed, true, "x isolates every pod both ways, but NetworkPolicy cannot block a pod from itself");
    assert.match(formatExplanation(open), /^x\/a \(10\.244\.1\.2\) -> x\/a \(10\.244\.1\.2\) 80\/TCP through a Service: Allow\negress of x\/a:\n {2}\[Self\] to itself through a Service, not subject to NetworkPolicy: Allow\n/);
    const closed = e.explain(a(), a(), { port: 81, protocol: "TCP" }, { hairpin: true });
    assert.deepEqual([closed.allowed, closed.ingress.path.map((p) => p.text)], [false, ["[Baseline] no-self-81 from-x: Deny"]]);
    assert.equal((explanationJson(closed, []) as { hairpin: boolean }).hairpin, true);
    assert.equal(e.explain(a(), a(), { port: 81, protocol: "TCP" }).allowed, true, "by its own address it never leaves the pod");
    assert.throws(() => e.explain(a(), e.resolve("x/b", 4, "TO"), tcp80, { hairpin: true }), /--hairpin: FROM and TO must be the same pod .*got x\/a and x\/b/);
  });

  test("the matrix: pods in name order, namespaces filter, the sandbox matrix's layout", () => {
    const m = ex.matrix(tcp80, { namespaces: ["x"] });
    assert.deepEqual(m.pods, ["x/a", "x/b"]);
    assert.deepEqual(m.reachability, { "x/a": { "x/a": true, "x/b": false }, "x/b": { "x/a": true, "x/b": true } });
    const text = renderMatrixOutput({ ...tcp80, ...m }, { json: false, yes: "allowed", no: "denied", summaryTail: " by policy" });
    assert.equal(text, "80/TCP: rows connect to columns ('.' allowed, 'X' denied)\n\n        x/a  x/b\nx/a       .    X\nx/b       .    .\n\n3/4 pairs allowed by policy\n");
    const json = JSON.parse(renderMatrixOutput({ port: 0, protocol: "ICMP", ...m }, { json: true, yes: "allowed", no: "denied", extra: { revision: "7" } })) as Record<string, unknown>;
    assert.deepEqual(json, { port: 0, protocol: "ICMP", pods: m.pods, matrix: m.reachability, revision: "7" });
    assert.deepEqual(ex.matrix(tcp80, { pods: ["y/c", "x/a"] }).pods, ["x/a", "y/c"]);
  });
});
