import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../../src/config/networkConfig.js";
import { computeRouting, describeRouting, podMtu, type LocalView } from "../../src/routing/backends.js";
import { formatCidr, parseCidr, parseIp } from "../../src/model/ip.js";
import type { Peer } from "../../src/model/lease.js";

function peer(name: string, subnet: string, publicIP: string, mac?: string): Peer {
  return { name, subnet: parseCidr(subnet), subnet6: undefined, publicIP: parseIp(publicIP), publicIPv6: undefined, backendType: mac ? "vxlan" : "host-gw", data: mac ? { VNI: 1, VtepMAC: mac } : undefined, data6: undefined };
}

function view(backendJson: object, onLink: string[]): LocalView {
  const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: backendJson });
  return {
    backend: cfg.backend,
    subnet: parseCidr("10.244.1.0/24"),
    subnet6: undefined,
    publicIP: parseIp("10.250.1.11"),
    publicIPv6: undefined,
    onLinkNetworks: onLink.map((c) => parseCidr(c)),
    blackholeRoute: false,
    network: cfg.ipv4?.network,
  };
}

// node-1 (us) on segment 1; node-2 on segment 1; node-3 on segment 2 behind a router.
const peers: Peer[] = [
  peer("node-3", "10.244.3.0/24", "10.250.2.13", "0e:2a:00:00:00:03"),
  peer("node-1", "10.244.1.0/24", "10.250.1.11", "0e:2a:00:00:00:01"),
  peer("node-2", "10.244.2.0/24", "10.250.1.12", "0e:2a:00:00:00:02"),
];

describe("vxlan", () => {
  test("every peer gets an onlink route, a permanent neighbour and an FDB entry; self is skipped", () => {
    const d = computeRouting(view({ Type: "vxlan" }, ["10.250.1.0/24"]), peers);
    assert.deepEqual(describeRouting(d), [
      "route 10.244.2.0/24 via 10.244.2.0 dev sluice.1 onlink",
      "route 10.244.3.0/24 via 10.244.3.0 dev sluice.1 onlink",
      "neigh 10.244.2.0 lladdr 0e:2a:00:00:00:02 dev sluice.1 permanent",
      "neigh 10.244.3.0 lladdr 0e:2a:00:00:00:03 dev sluice.1 permanent",
      "fdb 0e:2a:00:00:00:02 dst 10.250.1.12 dev sluice.1 self permanent",
      "fdb 0e:2a:00:00:00:03 dst 10.250.2.13 dev sluice.1 self permanent",
    ]);
  });

  test("a peer without a VTEP MAC is reported, not programmed", () => {
    const d = computeRouting(view({ Type: "vxlan" }, ["10.250.1.0/24"]), [peer("node-9", "10.244.9.0/24", "10.250.1.19")]);
    assert.deepEqual(d.routes, []);
    assert.equal(d.problems.length, 1);
    assert.match(d.problems[0] as string, /node-9 has no VtepMAC/);
  });

  test("MTU is the underlay's minus 50 unless the backend sets one", () => {
    assert.equal(podMtu(parseNetworkConfig({ Network: "10.244.0.0/16" }).backend, 1500), 1450);
    assert.equal(podMtu(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", MTU: 1400 } }).backend, 1500), 1400);
    assert.equal(podMtu(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }).backend, 1500), 1500);
  });
});

describe("host-gw", () => {
  test("on-link peers get a route via their public address; off-link peers are refused with a reason", () => {
    const d = computeRouting(view({ Type: "host-gw" }, ["10.250.1.0/24"]), peers);
    assert.deepEqual(describeRouting(d), [
      "route 10.244.2.0/24 via 10.250.1.12",
      "problem host-gw needs every peer on the same L2 segment, but 10.250.2.13 (node-3) is not on-link; use vxlan with DirectRouting for routed underlays",
    ]);
    assert.deepEqual(
      d.decisions.map((x) => `${x.peer}:${x.via}`),
      ["node-2:direct", "node-3:skipped"],
    );
  });

  test("blackhole route for our own subnet when asked", () => {
    const v = { ...view({ Type: "host-gw" }, ["10.250.1.0/24"]), blackholeRoute: true };
    assert.deepEqual(describeRouting(computeRouting(v, [])), ["route blackhole 10.244.1.0/24"]);
  });
});

describe("vxlan with DirectRouting", () => {
  test("decided per peer: direct route on the same segment, VXLAN across the router", () => {
    const d = computeRouting(view({ Type: "vxlan", DirectRouting: true }, ["10.250.1.0/24"]), peers);
    assert.deepEqual(describeRouting(d), [
      "route 10.244.2.0/24 via 10.250.1.12",
      "route 10.244.3.0/24 via 10.244.3.0 dev sluice.1 onlink",
      "neigh 10.244.3.0 lladdr 0e:2a:00:00:00:03 dev sluice.1 permanent",
      "fdb 0e:2a:00:00:00:03 dst 10.250.2.13 dev sluice.1 self permanent",
    ]);
  });
});

describe("dual stack", () => {
  test("IPv6 subnets route over the IPv6 device with the IPv6 VTEP MAC", () => {
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:244::/56", Backend: { Type: "vxlan" } });
    const v: LocalView = { ...view({ Type: "vxlan" }, ["10.250.1.0/24"]), backend: cfg.backend, subnet6: parseCidr("fd00:244:0:1::/64"), publicIPv6: parseIp("fd00:250::11") };
    const p: Peer = { ...peer("node-2", "10.244.2.0/24", "10.250.1.12", "0e:2a:00:00:00:02"), subnet6: parseCidr("fd00:244:0:2::/64"), publicIPv6: parseIp("fd00:250::12"), data6: { VNI: 1, VtepMAC: "0e:2a:00:00:06:02" } };
    assert.deepEqual(describeRouting(computeRouting(v, [p])), [
      "route 10.244.2.0/24 via 10.244.2.0 dev sluice.1 onlink",
      "route fd00:244:0:2::/64 via fd00:244:0:2:: dev sluice-v6.1 onlink",
      "neigh 10.244.2.0 lladdr 0e:2a:00:00:00:02 dev sluice.1 permanent",
      "neigh fd00:244:0:2:: lladdr 0e:2a:00:00:06:02 dev sluice-v6.1 permanent",
      "fdb 0e:2a:00:00:00:02 dst 10.250.1.12 dev sluice.1 self permanent",
      "fdb 0e:2a:00:00:06:02 dst fd00:250::12 dev sluice-v6.1 self permanent",
    ]);
  });
});

describe("peers are trusted only inside the cluster network", () => {
  const vx = (): LocalView => view({ Type: "vxlan" }, ["10.250.1.0/24"]);
  const good = peer("node-2", "10.244.2.0/24", "10.250.1.12", "0e:2a:00:00:00:02");

  test("a subnet outside the cluster network, or overlapping ours, is refused: no route, not trusted", () => {
    const d = computeRouting(vx(), [good, peer("evil-out", "192.168.7.0/24", "10.250.1.66", "0e:2a:00:00:00:66"), peer("evil-own", "10.244.1.128/25", "10.250.1.67", "0e:2a:00:00:00:67"), peer("evil-all", "10.244.0.0/16", "10.250.1.68", "0e:2a:00:00:00:68")]);
    assert.deepEqual(describeRouting(d), [
      "route 10.244.2.0/24 via 10.244.2.0 dev sluice.1 onlink",
      "neigh 10.244.2.0 lladdr 0e:2a:00:00:00:02 dev sluice.1 permanent",
      "fdb 0e:2a:00:00:00:02 dst 10.250.1.12 dev sluice.1 self permanent",
      "refused peer evil-all: subnet 10.244.0.0/16 overlaps this node's subnet 10.244.1.0/24; not routed, its traffic not trusted",
      "refused peer evil-out: subnet 192.168.7.0/24 is outside the cluster network 10.244.0.0/16; not routed, its traffic not trusted",
      "refused peer evil-own: subnet 10.244.1.128/25 overlaps this node's subnet 10.244.1.0/24; not routed, its traffic not trusted",
    ]);
    assert.deepEqual(d.trusted.map((t) => t.name), ["node-2"]);
    assert.deepEqual(d.decisions.map((x) => `${x.peer}:${x.via}`), ["evil-all:skipped", "evil-out:skipped", "evil-own:skipped", "node-2:vxlan"]);
  });

  test("two peers that overlap each other are both refused; the others are routed", () => {
    const d = computeRouting(vx(), [good, peer("node-3", "10.244.3.0/24", "10.250.1.13", "0e:2a:00:00:00:03"), peer("node-4", "10.244.3.128/25", "10.250.1.14", "0e:2a:00:00:00:04")]);
    assert.deepEqual(d.trusted.map((t) => t.name), ["node-2"]);
    assert.deepEqual(d.refused, [
      "peer node-3: subnet 10.244.3.0/24 overlaps 10.244.3.128/25 of peer node-4 (10.250.1.14); not routed, its traffic not trusted",
      "peer node-4: subnet 10.244.3.128/25 overlaps 10.244.3.0/24 of peer node-3 (10.250.1.13); not routed, its traffic not trusted",
    ]);
    assert.deepEqual(d.routes.map((r) => formatCidr(r.dst)), ["10.244.2.0/24"]);
  });

  test("a public address no host may have is refused; a refused peer does not take an overlapping good one down", () => {
    const d = computeRouting(vx(), [good, peer("zero", "10.244.9.0/24", "0.0.0.0", "0e:2a:00:00:00:09"), peer("far", "10.0.0.0/8", "10.250.1.70", "0e:2a:00:00:00:70")]);
    assert.deepEqual(d.trusted.map((t) => t.name), ["node-2"]);
    assert.match(d.refused.find((r) => r.startsWith("peer zero")) ?? "", /public address 0\.0\.0\.0 is the unspecified address/);
  });

  test("only routed peers are trusted: host-gw off-link and VTEP-less peers are not", () => {
    const hg = computeRouting(view({ Type: "host-gw" }, ["10.250.1.0/24"]), peers);
    assert.deepEqual(hg.trusted.map((t) => `${t.name} ${t.family}`), ["node-2 4"]);
    const vxd = computeRouting(vx(), [good, peer("node-9", "10.244.9.0/24", "10.250.1.19")]);
    assert.deepEqual(vxd.trusted.map((t) => t.name), ["node-2"]);
  });
});
