import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseWorkloadEndpointRecord } from "../../src/config/endpointSchema.js";
import { podObject } from "../../src/config/k8sSchemas.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../../src/model/endpoint.js";
import { EndpointJoinMemo, joinEndpoints } from "../../src/model/joinEndpoints.js";
import { mulberry32 } from "../helpers/golden.js";

const rec = (namespace: string, pod: string, node: string, ips: string[], ifName = "eth0"): WorkloadEndpointRecord => ({ node, namespace, pod, containerId: `c-${pod}`, ifName, hostIface: hostIfaceName(namespace, pod), ips });

const pod = (namespace: string, name: string, labels: Record<string, string>, ports: object[] = []) =>
  podObject.parse({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace, labels }, spec: { nodeName: "ignored", containers: [{ name: "c", ports }] } });

describe("joinEndpoints", () => {
  test("labels and container ports come from the Pod, addresses, node and interface from the record", () => {
    const eps = joinEndpoints([rec("prod", "web-1", "node-2", ["10.244.2.5", "fd00::2:5"])], [pod("prod", "web-1", { app: "web" }, [{ name: "http", containerPort: 8080 }, { containerPort: 53, protocol: "UDP" }])]);
    assert.deepEqual(eps, [
      {
        namespace: "prod",
        pod: "web-1",
        node: "node-2",
        hostIface: hostIfaceName("prod", "web-1"),
        ips: ["10.244.2.5", "fd00::2:5"],
        labels: { app: "web" },
        ports: [
          { name: "http", containerPort: 8080, protocol: "TCP" },
          { containerPort: 53, protocol: "UDP" },
        ],
      },
    ]);
  });

  test("a record without a Pod is an endpoint with no labels and no ports", () => {
    const eps = joinEndpoints([rec("default", "orphan", "n1", ["10.244.1.9"])], [pod("default", "other", { a: "b" })]);
    assert.equal(eps.length, 1);
    assert.deepEqual(eps[0]?.labels, {});
    assert.deepEqual(eps[0]?.ports, []);
    assert.deepEqual(eps[0]?.ips, ["10.244.1.9"]);
  });

  test("a Pod without a record is not an endpoint", () => {
    assert.deepEqual(joinEndpoints([], [pod("default", "p", { a: "b" })]), []);
  });

  test("a Pod of the same name in another namespace does not lend its labels", () => {
    const eps = joinEndpoints([rec("a", "p", "n1", ["10.0.0.1"])], [pod("b", "p", { x: "y" })]);
    assert.deepEqual(eps[0]?.labels, {});
  });

  test("ports of every container, in order; output sorted by namespace, pod, node, interface", () => {
    const p = podObject.parse({ apiVersion: "v1", kind: "Pod", metadata: { name: "multi", namespace: "z" }, spec: { containers: [{ ports: [{ containerPort: 1 }] }, { ports: [{ containerPort: 2, name: "two" }] }] } });
    const eps = joinEndpoints([rec("z", "multi", "n1", ["10.0.0.3"], "net1"), rec("b", "x", "n2", ["10.0.0.2"]), rec("z", "multi", "n1", ["10.0.0.4"], "eth0"), rec("a", "y", "n1", ["10.0.0.1"])], [p]);
    assert.deepEqual(
      eps.map((e) => `${e.namespace}/${e.pod}@${e.node}:${e.ips[0]}`),
      ["a/y@n1:10.0.0.1", "b/x@n2:10.0.0.2", "z/multi@n1:10.0.0.4", "z/multi@n1:10.0.0.3"],
    );
    assert.deepEqual(eps[2]?.ports, [
      { containerPort: 1, protocol: "TCP" },
      { name: "two", containerPort: 2, protocol: "TCP" },
    ]);
  });

  test("the output does not share arrays or objects with the input", () => {
    const r = rec("a", "p", "n1", ["10.0.0.1"]);
    const p = pod("a", "p", { k: "v" });
    const [e] = joinEndpoints([r], [p]);
    e?.ips.push("x");
    if (e) e.labels["k"] = "changed";
    assert.deepEqual(r.ips, ["10.0.0.1"]);
    assert.equal(p.metadata.labels?.["k"], "v");
  });
});

describe("WorkloadEndpointRecord schema", () => {
  const good = { node: "node-1", namespace: "default", pod: "web-1", containerId: "abc", ifName: "eth0", hostIface: hostIfaceName("default", "web-1"), ips: ["10.244.1.5", "fd00::5"], mac: "0a:58:0a:f4:01:05" };

  test("accepts what the CNI plugin writes, and drops unknown extra fields", () => {
    const r = parseWorkloadEndpointRecord({ ...good, addedLater: true });
    assert.ok(r.ok);
    assert.deepEqual(r.record, good);
  });

  test("names the field and the reason for bad records", () => {
    const cases: [object, RegExp][] = [
      [{ ...good, ips: ["10.244.1.5/24"] }, /^ips\[0\]: must be an IP address without a prefix length/],
      [{ ...good, ips: ["10.244.1.300"] }, /^ips\[0\]: must be an IP address/],
      [{ ...good, namespace: "Prod" }, /^namespace: must be a DNS-1123 label/],
      [{ ...good, hostIface: "a-very-long-interface" }, /^hostIface: must be at most 15 characters/],
      [{ ...good, mac: "zz" }, /^mac: must be a MAC address/],
      [{ ...good, node: "" }, /^node: must not be empty/],
      [{ ...good, containerId: undefined }, /^containerId: /],
    ];
    for (const [value, why] of cases) {
      const r = parseWorkloadEndpointRecord(value);
      assert.equal(r.ok, false, JSON.stringify(value));
      if (!r.ok) assert.match(r.reason, why);
    }
  });
});

describe("joinEndpoints with a memo", () => {
  const rec = (pod: string): WorkloadEndpointRecord => ({ namespace: "prod", pod, node: "n1", ifName: "eth0", hostIface: hostIfaceName("prod", pod), containerId: `c-${pod}`, ips: ["10.244.1.5"] });
  const podOf = (name: string, app: string) => ({ metadata: { name, namespace: "prod", labels: { app } } });

  test("unchanged record and pod give the same endpoint object; a changed pod a new one", () => {
    const memo = new EndpointJoinMemo();
    const [a, b] = [rec("a"), rec("b")];
    const pods = [podOf("a", "web"), podOf("b", "db")];
    const first = joinEndpoints([a, b], pods, { memo });
    const again = joinEndpoints([a, b], pods, { memo });
    assert.equal(again[0], first[0]);
    assert.equal(again[1], first[1]);
    const relabelled = joinEndpoints([a, b], [pods[0] as (typeof pods)[number], podOf("b", "api")], { memo });
    assert.equal(relabelled[0], first[0]);
    assert.notEqual(relabelled[1], first[1]);
    assert.deepEqual(relabelled[1]?.labels, { app: "api" });
    assert.deepEqual(relabelled, joinEndpoints([a, b], [pods[0] as (typeof pods)[number], podOf("b", "api")]), "the same as without a memo");
  });

  test("through random edits of records and pods, the memo's join equals a join without it", () => {
    const rand = mulberry32(5);
    const pick = (n: number): number => Math.floor(rand() * n);
    const memo = new EndpointJoinMemo();
    let records = ["a", "b", "c", "d"].map(rec);
    let pods = ["a", "b", "c", "d"].map((n) => podOf(n, "web"));
    for (let step = 0; step < 1500; step++) {
      const at = pick(pods.length || 1);
      const name = ["a", "b", "c", "d", "e", "f"][pick(6)] as string;
      const edit = pick(7);
      if (edit === 0 && pods.length) pods = pods.map((p, i) => (i === at ? podOf(p.metadata.name, `v${pick(3)}`) : p)); // relabel
      else if (edit === 1 && pods.length) pods = pods.map((p, i) => (i === at ? podOf(name, "web") : p)); // another pod at this place
      else if (edit === 2) pods = [...pods, podOf(name, `v${pick(3)}`)]; // maybe a name twice
      else if (edit === 3 && pods.length) pods = pods.filter((_, i) => i !== at);
      else if (edit === 4) records = [...records, rec(name)];
      else if (edit === 5 && records.length) records = records.filter((_, i) => i !== pick(records.length));
      else records = [...records].reverse();
      assert.deepEqual(joinEndpoints(records, pods, { memo }), joinEndpoints(records, pods), `step ${step} (edit ${edit})`);
    }
  });

  test("a pod in a namespace without its object keeps its labels but is not known", () => {
    const memo = new EndpointJoinMemo();
    const r = rec("a");
    const pods = [podOf("a", "web")];
    const [known] = joinEndpoints([r], pods, { memo, namespaceKnown: () => true });
    const [unknown] = joinEndpoints([r], pods, { memo, namespaceKnown: () => false });
    assert.equal(known?.metadataKnown, undefined);
    assert.equal(unknown?.metadataKnown, false);
    assert.deepEqual(unknown?.labels, { app: "web" });
  });
});
