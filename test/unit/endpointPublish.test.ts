import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { planEndpointPublish, publishedValue } from "../../src/datastore/etcdEndpointPublisher.js";
import { workloadEndpointKey } from "../../src/datastore/resourceKeys.js";
import { type WorkloadEndpointRecord, hostIfaceName } from "../../src/model/endpoint.js";

const P = "/sluice/v1";
const rec = (pod: string, ip: string, extra: Partial<WorkloadEndpointRecord> = {}): WorkloadEndpointRecord => ({ node: "plugin-says", namespace: "ns1", pod, containerId: `ctr-${pod}`, ifName: "eth0", hostIface: hostIfaceName("ns1", pod), ips: [ip], ...extra });
const key = (pod: string, node = "node-1"): string => workloadEndpointKey(node, "ns1", pod, "eth0", P);

describe("publishing a node's records as its workload endpoints (pure plan)", () => {
  test("the stored value is the record with the agent's node name, in the plugin's field order", () => {
    assert.equal(publishedValue(rec("a", "10.244.1.2", { mac: "02:00:00:00:00:01" }), "node-1"), JSON.stringify({ node: "node-1", namespace: "ns1", pod: "a", containerId: "ctr-a", ifName: "eth0", hostIface: hostIfaceName("ns1", "a"), ips: ["10.244.1.2"], mac: "02:00:00:00:00:01" }));
  });

  test("writes what is missing or different, deletes what no record stands for, nothing when all is in place", () => {
    const records = [rec("a", "10.244.1.2"), rec("b", "10.244.1.3"), rec("c", "10.244.1.4")];
    const stored = new Map([
      [key("a"), { value: publishedValue(records[0] as WorkloadEndpointRecord, "node-1"), modRevision: "5" }],
      [key("b"), { value: publishedValue(rec("b", "10.244.1.99"), "node-1"), modRevision: "6" }],
      [key("gone"), { value: "{}", modRevision: "7" }],
    ]);
    const plan = planEndpointPublish("node-1", P, records, stored);
    assert.deepEqual(plan.puts.map((p) => p.key), [key("b"), key("c")]);
    assert.equal(plan.puts[0]?.value, publishedValue(records[1] as WorkloadEndpointRecord, "node-1"));
    assert.deepEqual(plan.deletes, [{ key: key("gone"), modRevision: "7" }], "compare-and-delete on the revision that was read");
    const done = new Map(records.map((r) => [key(r.pod), { value: publishedValue(r, "node-1"), modRevision: "9" }]));
    assert.deepEqual(planEndpointPublish("node-1", P, records, done), { puts: [], deletes: [] });
  });

  test("two records for one key (never written by the plugin) publish one, by host interface order", () => {
    const a = rec("a", "10.244.1.2", { hostIface: "slc000000000001" });
    const b = rec("a", "10.244.1.3", { hostIface: "slc000000000000" });
    const plan = planEndpointPublish("node-1", P, [a, b], new Map());
    assert.deepEqual(plan.puts.map((p) => JSON.parse(p.value) as { ips: string[] }).map((v) => v.ips), [["10.244.1.3"]]);
  });
});
