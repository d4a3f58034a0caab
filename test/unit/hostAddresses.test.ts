/**
 * Addresses no host may have (0.0.0.0, ::, loopback, multicast, broadcast) stop at the
 * edge: a Pod's or Node's status keeps the object and loses only that value (with the
 * path, for the warning), a CNI record carrying one is refused, `sluicectl apply` warns,
 * and nothing of it reaches an ipset in the render.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseWorkloadEndpointRecord } from "../../src/config/endpointSchema.js";
import { type KubeObject, type ResourceKind, clusterNetworkPolicyKind, nodeKind, podKind, validateObject } from "../../src/config/resourceKinds.js";
import type { NodeObject } from "../../src/config/policySchemas.js";
import type { PodObject } from "../../src/config/k8sSchemas.js";
import { parseManifests } from "../../src/ctl/manifests.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { parseIp, unusableHostAddress } from "../../src/model/ip.js";
import { buildPolicyModel } from "../../src/policy/model.js";
import { renderPolicyModel } from "../../src/render/policy.js";
import type { PolicySnapshot } from "../../src/datastore/policySource.js";
import { joinEndpoints } from "../../src/model/joinEndpoints.js";

const reason = (text: string): string | undefined => unusableHostAddress(parseIp(text));

describe("addresses no host may have", () => {
  test("unspecified, loopback, multicast and the IPv4 broadcast, in both families; everything else is a host's", () => {
    assert.equal(reason("0.0.0.0"), "0.0.0.0 is the unspecified address");
    assert.equal(reason("::"), ":: is the unspecified address");
    assert.equal(reason("127.0.0.1"), "127.0.0.1 is a loopback address");
    assert.equal(reason("127.255.0.9"), "127.255.0.9 is a loopback address");
    assert.equal(reason("::1"), "::1 is the loopback address");
    assert.equal(reason("224.0.0.1"), "224.0.0.1 is a multicast address");
    assert.equal(reason("239.255.255.250"), "239.255.255.250 is a multicast address");
    assert.equal(reason("ff02::1"), "ff02::1 is a multicast address");
    assert.equal(reason("255.255.255.255"), "255.255.255.255 is the broadcast address");
    for (const ok of ["10.244.1.5", "0.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.255", "240.0.0.1", "169.254.1.1", "fd00::5", "::2", "fe80::1", "::ffff:10.0.0.1"]) assert.equal(reason(ok), undefined, ok);
  });
});

describe("a Pod's and a Node's unusable addresses are dropped on read, the object kept", () => {
  const pod = (status: Record<string, unknown>): unknown => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "y", labels: { app: "web" } }, spec: { nodeName: "n2", containers: [] }, status });
  const node = (addresses: Array<{ type: string; address: string }>): unknown => ({ apiVersion: "v1", kind: "Node", metadata: { name: "n9", labels: { zone: "a" } }, spec: {}, status: { addresses } });

  test("Pod: each bad podIPs entry and a bad podIP go, named by path; labels and good addresses stay", () => {
    const v = validateObject(podKind, pod({ podIP: "::", podIPs: [{ ip: "::" }, { ip: "10.244.2.7" }, { ip: "0.0.0.0" }, { ip: "not-an-ip" }], phase: "Running" }));
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual(v.object.status, { podIPs: [{ ip: "10.244.2.7" }], phase: "Running" });
    assert.deepEqual(v.object.metadata.labels, { app: "web" });
    assert.deepEqual(
      v.dropped.map((d) => `${d.path}: ${d.message}`),
      ["status.podIP: :: is the unspecified address; dropped", "status.podIPs[0].ip: :: is the unspecified address; dropped", "status.podIPs[2].ip: 0.0.0.0 is the unspecified address; dropped", 'status.podIPs[3].ip: "not-an-ip" is not an IP address; dropped'],
    );
    const clean = validateObject(podKind, pod({ podIP: "10.244.2.7", podIPs: [{ ip: "10.244.2.7" }, { ip: "fd00::7" }] }));
    assert.ok(clean.ok);
    assert.deepEqual(clean.dropped, []);
  });

  test("Node: InternalIP/ExternalIP that no host may have go, other address types stay", () => {
    const v = validateObject(nodeKind, node([{ type: "InternalIP", address: "0.0.0.0" }, { type: "ExternalIP", address: "::" }, { type: "InternalIP", address: "10.250.0.19" }, { type: "ExternalIP", address: "127.0.0.1" }, { type: "Hostname", address: "n9" }]));
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual(v.object.status?.addresses, [{ type: "InternalIP", address: "10.250.0.19" }, { type: "Hostname", address: "n9" }]);
    assert.deepEqual(v.dropped.map((d) => d.path), ["status.addresses[0].address", "status.addresses[1].address", "status.addresses[3].address"]);
  });

  test("sluicectl apply warns, naming the object and the field, and keeps the object", () => {
    const text = "apiVersion: v1\nkind: Node\nmetadata: {name: n9}\nstatus:\n  addresses: [{type: InternalIP, address: 0.0.0.0}, {type: InternalIP, address: 10.250.0.19}]\n";
    const parsed = parseManifests([{ name: "n.yaml", text }], { validate: true });
    assert.deepEqual(parsed.problems, []);
    assert.equal(parsed.objects.length, 1);
    assert.deepEqual(parsed.warnings, ["warning: document 1 (Node n9): status.addresses[0].address: 0.0.0.0 is the unspecified address; dropped"]);
    assert.deepEqual((parsed.objects[0]?.object as NodeObject).status?.addresses, [{ type: "InternalIP", address: "10.250.0.19" }]);
  });

  test("a CNI record with such an address is refused, naming the field", () => {
    const rec = { node: "n1", namespace: "y", pod: "p", containerId: "c", ifName: "eth0", hostIface: hostIfaceName("y", "p"), ips: ["10.244.1.5", "::"] };
    const r = parseWorkloadEndpointRecord(rec);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /^ips\[1\]: must be an IP address without a prefix length that a host may have .*: :: is the unspecified address$/);
    assert.ok(parseWorkloadEndpointRecord({ ...rec, ips: ["10.244.1.5", "fd00::5"] }).ok);
  });

  test("what is left reaches the render: a nodes peer and a pods peer hold the good addresses only", () => {
    const valid = <T extends KubeObject>(kind: ResourceKind<T>, x: unknown): T => {
      const r = validateObject(kind, x);
      assert.ok(r.ok, JSON.stringify(r));
      return r.object;
    };
    const badNode = valid(nodeKind, node([{ type: "InternalIP", address: "0.0.0.0" }, { type: "InternalIP", address: "10.250.0.19" }]));
    const badPod = valid(podKind, pod({ podIPs: [{ ip: "0.0.0.0" }, { ip: "10.244.2.7" }] }));
    const local = valid(podKind, { apiVersion: "v1", kind: "Pod", metadata: { name: "x1", namespace: "x" }, spec: { nodeName: "n1" }, status: { podIPs: [{ ip: "10.244.1.5" }] } });
    const cnp = valid(clusterNetworkPolicyKind, { apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: { name: "deny" }, spec: { tier: "Admin", priority: 1, subject: { namespaces: { matchLabels: { "kubernetes.io/metadata.name": "x" } } }, egress: [{ action: "Deny", to: [{ nodes: { matchLabels: { zone: "a" } } }, { pods: { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } }, podSelector: {} } }] }] } });
    const pods: PodObject[] = [local, badPod];
    const records = pods.map((p) => ({ node: p.spec.nodeName as string, namespace: p.metadata.namespace, pod: p.metadata.name, containerId: "", ifName: "eth0", hostIface: hostIfaceName(p.metadata.namespace, p.metadata.name), ips: (p.status?.podIPs ?? []).map((x) => x.ip) }));
    const snapshot: PolicySnapshot = {
      revision: "1",
      namespaces: ["x", "y"].map((n) => ({ name: n, labels: { "kubernetes.io/metadata.name": n } })),
      endpoints: joinEndpoints(records, pods),
      networkPolicies: [],
      pods,
      workloadEndpoints: [],
      objects: { Node: [badNode], ClusterNetworkPolicy: [cnp] },
    };
    const render = renderPolicyModel({ family: 4, nodeName: "n1", model: buildPolicyModel(snapshot), sctpSupported: true });
    const members = render.ipsets.flatMap((s) => s.members);
    assert.ok(members.includes("10.250.0.19") && members.includes("10.244.2.7"), JSON.stringify(render.ipsets));
    assert.ok(!members.some((m) => m.startsWith("0.0.0.0")), "no unspecified address in any set");
  });
});
