import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { type CniNode, makeCniNode, pingFrom } from "../helpers/cni.js";
import { uniquePrefix } from "../helpers/netns.js";

describe("sluice-cni under concurrent ADDs", () => {
  const prefix = uniquePrefix("cnic");
  const N = 20;
  let node: CniNode;

  before(async () => {
    node = await makeCniNode(prefix, 32, "10.244.9.1/24");
  });
  after(async () => {
    await node?.destroy();
  });

  test(`${N} ADDs at once get distinct addresses and are all wired; ${N} DELs at once leave nothing`, async () => {
    const pods = await Promise.all(Array.from({ length: N }, (_, i) => node.pod(`c${i}`)));
    const replies = await Promise.all(pods.map((p, i) => node.add(p, `ctr-c${i}`, `c${i}`)));
    for (const r of replies) assert.equal(r.code, 0, r.stdout + r.stderr);
    const ips = replies.map((r) => ((r.json?.["ips"] as Array<{ address: string }>)[0]?.address ?? "").split("/")[0] as string);
    assert.equal(new Set(ips).size, N, `distinct addresses: ${ips.join(" ")}`);
    assert.deepEqual(node.allocations(), [...ips].sort());
    const links = await node.links();
    for (let i = 0; i < N; i++) assert.ok(links.includes(hostIfaceName("ns1", `c${i}`)), `host veth of pod ${i}`);
    const reach = await Promise.all(ips.map((addr) => pingFrom(node.ns, addr)));
    assert.deepEqual(reach, ips.map(() => true), "the node reaches every pod");
    assert.ok(await pingFrom(pods[0] as string, ips[N - 1] as string), "first pod reaches the last one");

    const dels = await Promise.all(pods.map((p, i) => node.del(p, `ctr-c${i}`, `c${i}`)));
    for (const r of dels) assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(node.allocations(), []);
    assert.deepEqual(await node.links(), ["ext0", "lo"]);
  });
});
