/**
 * No pod sends VXLAN (test/helpers/forgedEncap.ts): x/a's hand-made VXLAN frame, for
 * node-2's VTEP, holding a datagram "from x/b" to x/t, never reaches x/t. The IPIP twin
 * runs in the kernel-feature VM (test/vm/guest/ipipBackend.guest.ts).
 */
import { describe } from "node:test";
import assert from "node:assert/strict";
import { nsJson, testCluster } from "../helpers/cluster.js";
import { forgedEncapTests } from "../helpers/forgedEncap.js";

describe("vxlan", () => {
  const sb = testCluster("wenc", { backend: "vxlan", nodes: 2, segments: 1 });
  forgedEncapTests(sb, "VXLAN", async (f) => {
    const vtep = (await nsJson<Array<{ address: string }>>(f.node.ns, "ip", ["link", "show", "sluice.1"]))[0]?.address;
    assert.ok(vtep, "node-2 has its VTEP");
    return [{ kind: "vxlan", family: 4, src: f.a, dst: f.node.address, sport: 7404, dport: 8472, vni: 1, innerDstMac: vtep, innerSrc: f.b, innerDst: f.t, innerSport: f.innerSport, innerDport: f.innerDport, payload: f.payload }];
  });
});
