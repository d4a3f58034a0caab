/**
 * Runs in the kernel-feature VM (the host's kernel has no ipip module): the ipip backend on
 * a two-node sandbox cluster. Each node has one `sluice.ipip` device (kind ipip, local = its
 * underlay address, MTU 1480) and routes each peer's subnet via that peer's address, onlink,
 * through it; pod traffic crosses it; no pod can send IPIP itself to smuggle another pod's
 * address past policy (test/helpers/forgedEncap.ts, the VXLAN twin runs on the host); an
 * agent restart keeps the device and its routes.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { SandboxNode } from "../../../src/sandbox/cluster.js";
import { listLeases, nodeSubnet } from "../../../src/sandbox/nodes.js";
import { nsJson, testCluster } from "../../helpers/cluster.js";
import { forgedEncapTests } from "../../helpers/forgedEncap.js";

interface IpLink {
  ifindex: number;
  mtu: number;
  linkinfo?: { info_kind?: string; info_data?: { local?: string; remote?: string } };
  stats64?: { rx: { packets: number } };
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  flags: string[];
}

const link = async (n: SandboxNode): Promise<IpLink> => {
  const l = (await nsJson<IpLink[]>(n.ns, "ip", ["-d", "-s", "link", "show", "sluice.ipip"]))[0];
  assert.ok(l, `${n.name} has sluice.ipip`);
  return l;
};
const peerRoutes = (n: SandboxNode): Promise<IpRoute[]> => nsJson<IpRoute[]>(n.ns, "ip", ["route", "show", "proto", "77", "dev", "sluice.ipip"]);

describe("the ipip backend on the kernel's IPIP", () => {
  const sb = testCluster("vip", { backend: "ipip", nodes: 2, segments: 1, readyTimeoutMs: 240_000 });

  test("each node has one IPIP device with its own underlay address as local end, MTU 1480, and routes the other node's subnet through it, onlink via that node", async () => {
    const leases = await listLeases(sb);
    assert.deepEqual(leases.map((l) => l.attrs.BackendType), ["ipip", "ipip"]);
    for (const n of sb.nodes) {
      const l = await link(n);
      assert.equal(l.linkinfo?.info_kind, "ipip");
      assert.equal(l.linkinfo?.info_data?.local, n.address);
      assert.ok([undefined, "any"].includes(l.linkinfo?.info_data?.remote), `remote any: ${JSON.stringify(l.linkinfo)}`);
      assert.equal(l.mtu, 1480);
      assert.match(readFileSync(join(n.stateDir, "subnet.env"), "utf8"), /^FLANNEL_MTU=1480$/m);
      const others = sb.nodes.filter((o) => o !== n);
      const want = await Promise.all(others.map(async (o) => ({ dst: await nodeSubnet(o), gateway: o.address, onlink: true })));
      assert.deepEqual((await peerRoutes(n)).map((r) => ({ dst: r.dst, gateway: r.gateway, onlink: r.flags.includes("onlink") })), want);
    }
  });

  forgedEncapTests(sb, "IPIP", async (f) => [{ kind: "ipip", family: 4, src: f.a, dst: f.node.address, innerSrc: f.b, innerDst: f.t, innerSport: f.innerSport, innerDport: f.innerDport, payload: f.payload }], { withinMs: 60_000 });

  test("the pods' traffic came in through node-2's IPIP device, and an agent restart keeps the device and its routes", async () => {
    const [, n2] = sb.nodes as [SandboxNode, SandboxNode];
    const before = await link(n2);
    assert.ok((before.stats64?.rx.packets ?? 0) > 0, "node-2's sluice.ipip received packets");
    const routes = await peerRoutes(n2);
    await sb.stopAgent(n2);
    assert.deepEqual(await peerRoutes(n2), routes, "the routes stay while the agent is down");
    await sb.startAgent(n2);
    await sb.waitReady(n2, 240_000);
    assert.equal((await link(n2)).ifindex, before.ifindex, "the same device, not a new one");
    assert.deepEqual(await peerRoutes(n2), routes);
  });
});
