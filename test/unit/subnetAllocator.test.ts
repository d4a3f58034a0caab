import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type NetworkConfig, parseNetworkConfig } from "../../src/config/networkConfig.js";
import { FREE_CANDIDATES, type RankedChoice, type SubnetChoice, freeSubnets, inPool, rankChoices, staleOwnLeases } from "../../src/ipam/subnetAllocator.js";
import { type Cidr, formatCidr, parseCidr, parseIp } from "../../src/model/ip.js";
import type { Lease } from "../../src/model/lease.js";

interface LeaseOpts {
  subnet?: string;
  subnet6?: string;
  publicIP?: string;
  publicIPv6?: string;
  leaseId?: string;
}

function lease(o: LeaseOpts): Lease {
  return {
    subnet: o.subnet ? parseCidr(o.subnet) : undefined,
    subnet6: o.subnet6 ? parseCidr(o.subnet6) : undefined,
    attrs: { PublicIP: o.publicIP ?? "", ...(o.publicIPv6 ? { PublicIPv6: o.publicIPv6 } : {}), BackendType: "vxlan" },
    publicIP: o.publicIP ? parseIp(o.publicIP) : undefined,
    publicIPv6: o.publicIPv6 ? parseIp(o.publicIPv6) : undefined,
    leaseId: o.leaseId ?? "7587869300612345",
    expiration: o.leaseId === "0" ? undefined : new Date("2030-01-01T00:00:00Z"),
    modRevision: "42",
  };
}

/** Keeps Fisher-Yates from swapping anything: free subnets come out lowest first. */
const inOrder = () => 0.999999;

const ME = "192.168.0.1";
const OTHER = "192.168.0.2";

const fmt = (c: Cidr | undefined) => (c ? formatCidr(c) : "-");
const describeChoices = (cs: readonly RankedChoice[]) => cs.map((c) => `${c.reason} ${fmt(c.subnet)} ${fmt(c.subnet6)}`);
const describeCidrs = (cs: readonly Cidr[]) => cs.map((c) => formatCidr(c));

// 10.0.0.0/28 -> /30 subnets; the pool is 10.0.0.4, 10.0.0.8, 10.0.0.12.
const tiny: NetworkConfig = parseNetworkConfig({ Network: "10.0.0.0/28" });
// 10.244.0.0/16 -> /24 subnets; the pool is 10.244.10.0 .. 10.244.12.0.
const ranged: NetworkConfig = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetMin: "10.244.10.0", SubnetMax: "10.244.12.0" });
const wide: NetworkConfig = parseNetworkConfig({ Network: "10.244.0.0/16" });
// dual stack: 10.0.0.4/.8/.12 and fc00::4/::8/::c (/126)
const dualTiny: NetworkConfig = parseNetworkConfig({ Network: "10.0.0.0/28", EnableIPv6: true, IPv6Network: "fc00::/124" });
const v6Tiny: NetworkConfig = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/124" });

function rank(config: NetworkConfig, leases: Lease[], previous?: SubnetChoice, random: () => number = inOrder) {
  return rankChoices({ config, leases, publicIP: parseIp(ME), publicIPv6: undefined, previous, random });
}

const prev = (subnet: string | undefined, subnet6?: string): SubnetChoice => ({
  subnet: subnet ? parseCidr(subnet) : undefined,
  subnet6: subnet6 ? parseCidr(subnet6) : undefined,
});

describe("rankChoices: own lease and reservations", () => {
  test("no leases: every free subnet, lowest first with a non-shuffling random", () => {
    assert.deepEqual(describeChoices(rank(tiny, [])), ["free 10.0.0.4/30 -", "free 10.0.0.8/30 -", "free 10.0.0.12/30 -"]);
  });

  test("own lease (matched by PublicIP) comes first and carries the lease", () => {
    const other = lease({ subnet: "10.0.0.4/30", publicIP: OTHER });
    const mine = lease({ subnet: "10.0.0.8/30", publicIP: ME });
    const choices = rank(tiny, [other, mine]);
    assert.deepEqual(describeChoices(choices), ["own-lease 10.0.0.8/30 -", "free 10.0.0.12/30 -"]);
    assert.equal(choices[0]?.existing, mine);
    assert.equal(choices[1]?.existing, undefined);
  });

  test("another node's lease is never offered", () => {
    const other = lease({ subnet: "10.0.0.8/30", publicIP: OTHER });
    assert.deepEqual(describeChoices(rank(tiny, [other])), ["free 10.0.0.4/30 -", "free 10.0.0.12/30 -"]);
  });

  test("a reservation (leaseId 0) for this node comes before its own lease", () => {
    const mine = lease({ subnet: "10.0.0.8/30", publicIP: ME });
    const reserved = lease({ subnet: "10.0.0.12/30", publicIP: ME, leaseId: "0" });
    const choices = rank(tiny, [mine, reserved]);
    assert.deepEqual(describeChoices(choices), ["reservation 10.0.0.12/30 -", "own-lease 10.0.0.8/30 -", "free 10.0.0.4/30 -"]);
    assert.equal(choices[0]?.existing, reserved);
    assert.equal(choices[1]?.existing, mine);
  });

  test("a reservation for another node is never offered, nor its subnet as free", () => {
    const reservedForOther = lease({ subnet: "10.0.0.4/30", publicIP: OTHER, leaseId: "0" });
    assert.deepEqual(describeChoices(rank(tiny, [reservedForOther])), ["free 10.0.0.8/30 -", "free 10.0.0.12/30 -"]);
  });

  test("own lease outside the pool (config changed) is not offered", () => {
    const mine = lease({ subnet: "10.244.5.0/24", publicIP: ME });
    assert.deepEqual(describeChoices(rank(ranged, [mine])), ["free 10.244.10.0/24 -", "free 10.244.11.0/24 -", "free 10.244.12.0/24 -"]);
  });

  test("own lease with another subnet length is not offered", () => {
    const mine = lease({ subnet: "10.244.10.0/25", publicIP: ME });
    assert.deepEqual(describeChoices(rank(ranged, [mine])), ["free 10.244.11.0/24 -", "free 10.244.12.0/24 -"]);
  });

  test("without a public IP nothing is matched as ours", () => {
    const l = lease({ subnet: "10.0.0.8/30", publicIP: ME });
    const choices = rankChoices({ config: tiny, leases: [l], publicIP: undefined, publicIPv6: undefined, previous: undefined, random: inOrder });
    assert.deepEqual(describeChoices(choices), ["free 10.0.0.4/30 -", "free 10.0.0.12/30 -"]);
  });

  test("IPv6-only: own lease matched by PublicIPv6", () => {
    const mine = lease({ subnet6: "fc00::8/126", publicIPv6: "fd00::1" });
    const choices = rankChoices({ config: v6Tiny, leases: [mine], publicIP: undefined, publicIPv6: parseIp("fd00::1"), previous: undefined, random: inOrder });
    assert.deepEqual(describeChoices(choices), ["own-lease - fc00::8/126", "free - fc00::4/126", "free - fc00::c/126"]);
  });
});

describe("rankChoices: previous subnet (subnet.env)", () => {
  test("offered when free and in the pool, before the free ones, and not repeated", () => {
    assert.deepEqual(describeChoices(rank(tiny, [], prev("10.0.0.12/30"))), ["previous 10.0.0.12/30 -", "free 10.0.0.4/30 -", "free 10.0.0.8/30 -"]);
  });

  test("comes after own lease", () => {
    const mine = lease({ subnet: "10.0.0.4/30", publicIP: ME });
    assert.deepEqual(describeChoices(rank(tiny, [mine], prev("10.0.0.12/30"))), ["own-lease 10.0.0.4/30 -", "previous 10.0.0.12/30 -", "free 10.0.0.8/30 -"]);
  });

  test("not offered when another node holds it", () => {
    const other = lease({ subnet: "10.0.0.12/30", publicIP: OTHER });
    assert.deepEqual(describeChoices(rank(tiny, [other], prev("10.0.0.12/30"))), ["free 10.0.0.4/30 -", "free 10.0.0.8/30 -"]);
  });

  test("not offered when an overlapping subnet is held", () => {
    const other = lease({ subnet: "10.244.10.0/23", publicIP: OTHER });
    assert.deepEqual(describeChoices(rank(ranged, [other], prev("10.244.11.0/24"))), ["free 10.244.12.0/24 -"]);
  });

  test("not offered when below SubnetMin, above SubnetMax, outside the network or of another length", () => {
    const expected = ["free 10.244.10.0/24 -", "free 10.244.11.0/24 -", "free 10.244.12.0/24 -"];
    for (const p of ["10.244.9.0/24", "10.244.13.0/24", "10.245.11.0/24", "10.244.11.0/25", "10.244.0.0/16"]) {
      assert.deepEqual(describeChoices(rank(ranged, [], prev(p))), expected, p);
    }
  });

  test("a dual-stack previous is not offered to an IPv4-only network", () => {
    assert.deepEqual(describeChoices(rank(tiny, [], prev("10.0.0.12/30", "fc00::c/126"))), ["free 10.0.0.4/30 -", "free 10.0.0.8/30 -", "free 10.0.0.12/30 -"]);
  });
});

describe("rankChoices: free subnets", () => {
  test("the random function decides the order; the set stays the same", () => {
    const shuffled = describeChoices(rank(tiny, [], undefined, () => 0));
    assert.notDeepEqual(shuffled, ["free 10.0.0.4/30 -", "free 10.0.0.8/30 -", "free 10.0.0.12/30 -"]);
    assert.deepEqual([...shuffled].sort(), ["free 10.0.0.12/30 -", "free 10.0.0.4/30 -", "free 10.0.0.8/30 -"]);
  });

  test("the same random gives the same order", () => {
    const seq = () => {
      let i = 0;
      const values = [0.3, 0.7, 0.1, 0.9, 0.5];
      return () => values[i++ % values.length] as number;
    };
    assert.deepEqual(rank(wide, [], undefined, seq()), rank(wide, [], undefined, seq()));
  });

  test(`at most ${FREE_CANDIDATES} candidates, the lowest free ones`, () => {
    assert.equal(FREE_CANDIDATES, 100);
    const choices = rank(wide, []);
    assert.equal(choices.length, 100);
    assert.equal(fmt(choices[0]?.subnet), "10.244.1.0/24");
    assert.equal(fmt(choices[99]?.subnet), "10.244.100.0/24");
    assert.ok(choices.every((c) => c.reason === "free" && c.subnet6 === undefined));
  });

  test("empty when the pool is full", () => {
    const leases = [
      lease({ subnet: "10.0.0.4/30", publicIP: "192.168.0.2" }),
      lease({ subnet: "10.0.0.8/30", publicIP: "192.168.0.3" }),
      lease({ subnet: "10.0.0.12/30", publicIP: "192.168.0.4", leaseId: "0" }),
    ];
    assert.deepEqual(rank(tiny, leases, prev("10.0.0.8/30")), []);
  });

  test("a full pool still offers this node's own lease", () => {
    const mine = lease({ subnet: "10.0.0.8/30", publicIP: ME });
    const leases = [lease({ subnet: "10.0.0.4/30", publicIP: OTHER }), mine, lease({ subnet: "10.0.0.12/30", publicIP: "192.168.0.4" })];
    assert.deepEqual(describeChoices(rank(tiny, leases)), ["own-lease 10.0.0.8/30 -"]);
  });
});

describe("rankChoices: dual stack", () => {
  test("free choices are IPv4/IPv6 pairs", () => {
    assert.deepEqual(describeChoices(rank(dualTiny, [])), ["free 10.0.0.4/30 fc00::4/126", "free 10.0.0.8/30 fc00::8/126", "free 10.0.0.12/30 fc00::c/126"]);
  });

  test("taken subnets are skipped per family; pairs are as many as the scarcer family", () => {
    const other = lease({ subnet: "10.0.0.4/30", subnet6: "fc00::8/126", publicIP: OTHER });
    const third = lease({ subnet: "10.0.0.12/30", subnet6: "fc00::c/126", publicIP: "192.168.0.3" });
    assert.deepEqual(describeChoices(rank(dualTiny, [other])), ["free 10.0.0.8/30 fc00::4/126", "free 10.0.0.12/30 fc00::c/126"]);
    assert.deepEqual(describeChoices(rank(dualTiny, [other, third])), ["free 10.0.0.8/30 fc00::4/126"]);
  });

  test("own dual-stack lease first", () => {
    const mine = lease({ subnet: "10.0.0.8/30", subnet6: "fc00::8/126", publicIP: ME, publicIPv6: "fd00::1" });
    assert.deepEqual(describeChoices(rank(dualTiny, [mine])), ["own-lease 10.0.0.8/30 fc00::8/126", "free 10.0.0.4/30 fc00::4/126", "free 10.0.0.12/30 fc00::c/126"]);
  });

  test("an IPv4-only lease of ours does not fit a dual-stack network", () => {
    const mine = lease({ subnet: "10.0.0.8/30", publicIP: ME });
    assert.deepEqual(describeChoices(rank(dualTiny, [mine])), ["free 10.0.0.4/30 fc00::4/126", "free 10.0.0.12/30 fc00::8/126"]);
  });

  test("a dual-stack previous is offered when both halves are free", () => {
    assert.deepEqual(describeChoices(rank(dualTiny, [], prev("10.0.0.12/30", "fc00::4/126")))[0], "previous 10.0.0.12/30 fc00::4/126");
    const holdsV6 = lease({ subnet: "10.0.0.4/30", subnet6: "fc00::4/126", publicIP: OTHER });
    assert.notEqual(describeChoices(rank(dualTiny, [holdsV6], prev("10.0.0.12/30", "fc00::4/126")))[0], "previous 10.0.0.12/30 fc00::4/126");
  });

  test("a previous without its IPv6 half is not offered to a dual-stack network", () => {
    assert.equal(rank(dualTiny, [], prev("10.0.0.12/30")).some((c) => c.reason === "previous"), false);
  });
});

describe("freeSubnets", () => {
  const pool = ranged.ipv4;
  assert.ok(pool);

  test("all of SubnetMin..SubnetMax when nothing is leased", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [])), ["10.244.10.0/24", "10.244.11.0/24", "10.244.12.0/24"]);
  });

  test("taken subnets are excluded", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [lease({ subnet: "10.244.11.0/24", publicIP: OTHER })])), ["10.244.10.0/24", "10.244.12.0/24"]);
  });

  test("a reservation counts as taken", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [lease({ subnet: "10.244.10.0/24", publicIP: OTHER, leaseId: "0" })])), ["10.244.11.0/24", "10.244.12.0/24"]);
  });

  test("overlapping leases of other lengths are excluded", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [lease({ subnet: "10.244.12.0/23", publicIP: OTHER })])), ["10.244.10.0/24", "10.244.11.0/24"]);
    assert.deepEqual(describeCidrs(freeSubnets(pool, [lease({ subnet: "10.244.11.128/25", publicIP: OTHER })])), ["10.244.10.0/24", "10.244.12.0/24"]);
  });

  test("leases outside the pool do not matter", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [lease({ subnet: "10.244.9.0/24", publicIP: OTHER }), lease({ subnet: "10.244.13.0/24", publicIP: OTHER })])), [
      "10.244.10.0/24",
      "10.244.11.0/24",
      "10.244.12.0/24",
    ]);
  });

  test("limit", () => {
    assert.deepEqual(describeCidrs(freeSubnets(pool, [], 2)), ["10.244.10.0/24", "10.244.11.0/24"]);
    assert.deepEqual(freeSubnets(pool, [], 0), []);
  });

  test("IPv6 pool ignores IPv4 leases", () => {
    const pool6 = v6Tiny.ipv6;
    assert.ok(pool6);
    assert.deepEqual(describeCidrs(freeSubnets(pool6, [lease({ subnet: "10.0.0.4/30", subnet6: "fc00::c/126", publicIP: OTHER })])), ["fc00::4/126", "fc00::8/126"]);
  });

  test("the default limit stops at 100 in a /16", () => {
    const all = freeSubnets(wide.ipv4 as NonNullable<typeof wide.ipv4>, []);
    assert.equal(all.length, 100);
    assert.equal(formatCidr(all[99] as Cidr), "10.244.100.0/24");
  });
});

describe("inPool", () => {
  const pool = ranged.ipv4;

  test("no pool: only an absent subnet fits", () => {
    assert.equal(inPool(undefined, undefined), true);
    assert.equal(inPool(undefined, parseCidr("10.244.10.0/24")), false);
  });

  test("a pool needs a subnet", () => {
    assert.equal(inPool(pool, undefined), false);
  });

  test("bounds are inclusive", () => {
    assert.equal(inPool(pool, parseCidr("10.244.10.0/24")), true);
    assert.equal(inPool(pool, parseCidr("10.244.11.0/24")), true);
    assert.equal(inPool(pool, parseCidr("10.244.12.0/24")), true);
  });

  test("outside SubnetMin..SubnetMax", () => {
    assert.equal(inPool(pool, parseCidr("10.244.9.0/24")), false);
    assert.equal(inPool(pool, parseCidr("10.244.13.0/24")), false);
  });

  test("outside the network or another length or family", () => {
    assert.equal(inPool(pool, parseCidr("10.245.11.0/24")), false);
    assert.equal(inPool(pool, parseCidr("10.244.11.0/25")), false);
    assert.equal(inPool(pool, parseCidr("10.244.10.0/23")), false);
    assert.equal(inPool(pool, parseCidr("fc00::/64")), false);
  });
});

describe("staleOwnLeases", () => {
  const cfg = parseNetworkConfig({ Network: "10.1.0.0/16" });
  test("this node's lease outside the current network is stale; reservations and other nodes' leases are not", () => {
    const leases = [
      lease({ subnet: "10.9.3.0/24", publicIP: ME }),
      lease({ subnet: "10.9.4.0/24", publicIP: ME, leaseId: "0" }),
      lease({ subnet: "10.9.5.0/24", publicIP: OTHER }),
      lease({ subnet: "10.1.6.0/24", publicIP: ME }),
    ];
    assert.deepEqual(
      staleOwnLeases(cfg, leases, parseIp(ME), undefined).map((l) => fmt(l.subnet)),
      ["10.9.3.0/24"],
    );
  });
});
