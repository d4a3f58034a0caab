/**
 * udp (flannel's userspace backend): the common connectivity suite (full pod matrix, MTU,
 * a node added and removed, both agents restarted: forwarding resumes, TCP survives), then
 * what is particular to it: each node's persistent TUN device `sluice.udp` with the pod
 * MTU and one route per peer subnet on it, and `sluicectl cleanup` removing the device.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { UDP_DEVICE } from "../../src/backends/udp/spec.js";
import { formatCidr } from "../../src/model/ip.js";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { listLeases } from "../../src/sandbox/nodes.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { e2eSuite } from "./connectivity.js";

e2eSuite("eu", "udp", 1, {}, (sb) => {
  const node = (i: number): SandboxNode => sb.nodeByName(String(i));

  test("every node has a persistent TUN device sluice.udp with the pod MTU, and routes each peer's subnet over it", async () => {
    const leases = await listLeases(sb);
    for (const n of sb.nodes) {
      const link = await nsExec(n.ns, "ip", ["-d", "link", "show", UDP_DEVICE]);
      assert.match(link, /mtu 1472/, `${n.name}: ${link}`);
      assert.match(link, /tun type tun pi off/, `${n.name}: a TUN device without packet info: ${link}`);
      assert.match(link, /persist on/, `${n.name}: the device outlives the agent: ${link}`);
      const routes = await nsExec(n.ns, "ip", ["route", "show", "dev", UDP_DEVICE]);
      const peers = leases.filter((l) => l.attrs.NodeName !== n.name).flatMap((l) => (l.subnet ? [formatCidr(l.subnet)] : []));
      assert.ok(peers.length >= 2, `${n.name} has peers`);
      for (const s of peers) assert.ok(routes.includes(s), `${n.name} routes ${s} over ${UDP_DEVICE}:\n${routes}`);
    }
  });

  test("sluicectl cleanup removes the TUN device (last: it leaves node-3 bare)", async () => {
    const n3 = node(3);
    await sb.stopAgent(n3);
    assert.match(await nsExec(n3.ns, "ip", ["link", "show"]), /sluice\.udp/, "the stopped agent's device stays");
    const out = await nsExec(n3.ns, process.execPath, [binPath("sluicectl"), "cleanup"]);
    assert.match(out, /device sluice\.udp removed/);
    assert.doesNotMatch(await nsExec(n3.ns, "ip", ["link", "show"]), /sluice\.udp/);
  });
});
