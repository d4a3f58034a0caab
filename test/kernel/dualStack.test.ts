import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSubnetEnv } from "../../src/agent/subnetEnv.js";
import { type Cidr, formatCidr, formatIp } from "../../src/model/ip.js";

const cidrText = (c: Cidr | undefined): string => (c ? formatCidr(c) : "none");
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually, ping } from "../../src/sandbox/endpoints.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { testCluster } from "../helpers/cluster.js";

describe("dual-stack vxlan", () => {
  const sb = testCluster("ds", { backend: "vxlan", nodes: 2, segments: 1, ipv6: true });

  test("leases carry both subnets in flannel's key form, with an IPv6 VTEP", async () => {
    const c = sb.etcdClient();
    try {
      const kvs = await c.getAll().prefix("/coreos.com/network/subnets/").strings();
      const keys = Object.keys(kvs);
      assert.equal(keys.length, 2);
      for (const k of keys) {
        assert.match(k, /^\/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24&fd00:244:0:[0-9a-f]+::-64$/);
        const v = JSON.parse(kvs[k] as string) as { PublicIPv6: string; BackendV6Data: { VtepMAC: string } };
        assert.match(v.PublicIPv6, /^fd00:250:1::/);
        assert.match(v.BackendV6Data.VtepMAC, /^0e:2a(:[0-9a-f]{2}){4}$/);
      }
    } finally {
      c.close();
    }
  });

  test("subnet.env has flannel's IPv6 keys and the MTU fits an IPv6 tunnel", async () => {
    const n = sb.nodes[0] as SandboxNode;
    const text = readFileSync(join(n.stateDir, "subnet.env"), "utf8");
    assert.match(text, /^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d+\.1\/24\nFLANNEL_IPV6_NETWORK=fd00:244::\/56\nFLANNEL_IPV6_SUBNET=fd00:244:0:[0-9a-f]+::1\/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n$/);
  });

  test("IPv6 routes over sluice-v6.1 carry real traffic between nodes, beside IPv4", async () => {
    const [n1, n2] = sb.nodes as [SandboxNode, SandboxNode];
    const env2 = await readSubnetEnv(join(n2.stateDir, "subnet.env"));
    assert.ok(env2?.ipv6Subnet && env2.subnet);
    const tunnel6 = formatIp({ family: 6, value: env2.ipv6Subnet.ip });
    const tunnel4 = formatIp({ family: 4, value: env2.subnet.ip });
    assert.ok(await eventually(async () => (await nsExec(n1.ns, "ip", ["-6", "route", "show", "proto", "77"])).includes(`${cidrText(env2.ipv6Subnet)} via ${tunnel6} dev sluice-v6.1`), 10_000));
    assert.ok(await eventually(() => ping({ ns: n1.ns }, tunnel6), 10_000), `ping ${tunnel6} over the IPv6 tunnel`);
    assert.ok(await eventually(() => ping({ ns: n1.ns }, tunnel4), 10_000), `ping ${tunnel4} over the IPv4 tunnel`);
    assert.match(await nsExec(n1.ns, "ip6tables", ["-S", "SLUICE-FORWARD"]), /-s fd00:244::\/56 .*-j ACCEPT/);
  });
});
