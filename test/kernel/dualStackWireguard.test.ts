/**
 * Dual-stack WireGuard in `Mode: separate` (flannel's default): one device per family,
 * `sluice-wg` listening on 51820 for IPv4 peers and `sluice-wg-v6` on 51821 for IPv6
 * peers over the IPv6 underlay, the same key on both, flannel's lease data for each
 * family; real traffic over each. wireguard-go here (the kernel has no WireGuard).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSubnetEnv } from "../../src/agent/subnetEnv.js";
import { parseWgDump } from "../../src/backends/wireguard/wgTool.js";
import { run } from "../../src/dataplane/exec.js";
import { formatCidr, formatIp } from "../../src/model/ip.js";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually, ping } from "../../src/sandbox/endpoints.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { testCluster } from "../helpers/cluster.js";

describe("dual-stack wireguard (Mode separate)", () => {
  const sb = testCluster("dw", { backend: "wireguard", nodes: 2, segments: 1, ipv6: true });

  async function dump(n: SandboxNode, dev: string): Promise<ReturnType<typeof parseWgDump>> {
    const r = await run("nsenter", ["-t", String(sb.agentPid(n)), "-m", "-n", "wg", "show", dev, "dump"]);
    assert.equal(r.code, 0, `wg show ${dev} dump on ${n.name}: ${r.stderr}`);
    return parseWgDump(r.stdout);
  }

  test("leases carry flannel's data for both families: one public key, port 51820 and 51821", async () => {
    const c = sb.etcdClient();
    try {
      const kvs = await c.getAll().prefix("/coreos.com/network/subnets/").strings();
      assert.equal(Object.keys(kvs).length, 2);
      for (const v of Object.values(kvs).map((t) => JSON.parse(t) as { BackendType: string; BackendData: { PublicKey: string; Port: number }; BackendV6Data: { PublicKey: string; Port: number } })) {
        assert.equal(v.BackendType, "wireguard");
        assert.equal(v.BackendData.Port, 51820);
        assert.equal(v.BackendV6Data.Port, 51821);
        assert.equal(v.BackendV6Data.PublicKey, v.BackendData.PublicKey, "one key pair for both devices");
      }
    } finally {
      c.close();
    }
  });

  test("subnet.env's MTU is the underlay's less 80, and each device has the other node as its one peer, over its own family", async () => {
    const [n1, n2] = sb.nodes as [SandboxNode, SandboxNode];
    assert.match(readFileSync(join(n1.stateDir, "subnet.env"), "utf8"), /^FLANNEL_MTU=1420$/m);
    const env2 = await readSubnetEnv(join(n2.stateDir, "subnet.env"));
    assert.ok(env2?.subnet && env2.ipv6Subnet);
    const v4 = await dump(n1, "sluice-wg");
    const v6 = await dump(n1, "sluice-wg-v6");
    assert.equal(v4.listenPort, 51820);
    assert.equal(v6.listenPort, 51821);
    assert.deepEqual([...v4.peers.values()].map((p) => [p.endpoint, p.allowedIps]), [[`${n2.address}:51820`, [formatCidr(env2.subnet)]]]);
    assert.deepEqual([...v6.peers.values()].map((p) => p.allowedIps), [[formatCidr(env2.ipv6Subnet)]]);
    assert.match([...v6.peers.values()][0]?.endpoint ?? "", /^\[fd00:250:1::[0-9a-f]+\]:51821$/);
  });

  test("IPv4 and IPv6 traffic between the nodes crosses the two devices", async () => {
    const [n1, n2] = sb.nodes as [SandboxNode, SandboxNode];
    const env2 = await readSubnetEnv(join(n2.stateDir, "subnet.env"));
    assert.ok(env2?.subnet && env2.ipv6Subnet);
    const tunnel4 = formatIp({ family: 4, value: env2.subnet.ip });
    const tunnel6 = formatIp({ family: 6, value: env2.ipv6Subnet.ip });
    const subnet6 = formatCidr(env2.ipv6Subnet);
    assert.ok(await eventually(async () => (await nsExec(n1.ns, "ip", ["-6", "route", "show", "proto", "77"])).includes(`${subnet6} dev sluice-wg-v6`), 10_000));
    assert.ok(await eventually(() => ping({ ns: n1.ns }, tunnel4), 15_000), `ping ${tunnel4} over sluice-wg`);
    assert.ok(await eventually(() => ping({ ns: n1.ns }, tunnel6), 15_000), `ping ${tunnel6} over sluice-wg-v6`);
    for (const dev of ["sluice-wg", "sluice-wg-v6"]) {
      const peer = [...(await dump(n1, dev)).peers.values()][0];
      assert.ok(peer && peer.latestHandshake > 0, `${dev} made a handshake`);
    }
  });
});
