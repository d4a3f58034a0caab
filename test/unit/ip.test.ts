import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  type Cidr,
  bitsOf,
  cidr,
  cidrContains,
  cidrContainsIp,
  cidrEnd,
  cidrEquals,
  cidrHost,
  cidrOverlaps,
  cidrSize,
  formatCidr,
  formatIp,
  formatMac,
  ipEquals,
  ipFromBytes,
  ipToBytes,
  isLinkLocal,
  parseCidr,
  parseIp,
  parseMac,
} from "../../src/model/ip.js";

const v4 = (value: bigint) => ({ family: 4 as const, value });
const v6 = (value: bigint) => ({ family: 6 as const, value });
const c4 = (ip: bigint, prefixLen: number): Cidr => ({ family: 4, ip, prefixLen });
const c6 = (ip: bigint, prefixLen: number): Cidr => ({ family: 6, ip, prefixLen });

describe("parseIp (IPv4)", () => {
  test("dotted quads become 32-bit values", () => {
    assert.deepEqual(parseIp("0.0.0.0"), v4(0n));
    assert.deepEqual(parseIp("10.244.0.0"), v4(0x0af4_0000n));
    assert.deepEqual(parseIp("192.168.1.1"), v4(0xc0a8_0101n));
    assert.deepEqual(parseIp("255.255.255.255"), v4(0xffff_ffffn));
  });

  test("surrounding whitespace is ignored", () => {
    assert.deepEqual(parseIp("  10.0.0.1\n"), v4(0x0a00_0001n));
  });

  for (const bad of ["", "10.0.0", "10.0.0.256", "10.0.0.1.2", "010.0.0.1", "10.0.0.-1", "a.b.c.d", "10.0.0.1/24", "host.example"]) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseIp(bad), /is not an IP address/);
    });
  }
});

describe("parseIp (IPv6)", () => {
  test("full form", () => {
    assert.deepEqual(parseIp("2001:0db8:0000:0000:0000:0000:0000:0001"), v6(0x2001_0db8_0000_0000_0000_0000_0000_0001n));
  });

  test("compressed forms", () => {
    assert.deepEqual(parseIp("::"), v6(0n));
    assert.deepEqual(parseIp("::1"), v6(1n));
    assert.deepEqual(parseIp("2001:db8::1"), v6(0x2001_0db8_0000_0000_0000_0000_0000_0001n));
    assert.deepEqual(parseIp("fe80::"), v6(0xfe80_0000_0000_0000_0000_0000_0000_0000n));
    assert.deepEqual(parseIp("1:2:3:4:5:6:7::"), v6(0x0001_0002_0003_0004_0005_0006_0007_0000n));
    assert.deepEqual(parseIp("::2:3:4:5:6:7:8"), v6(0x0000_0002_0003_0004_0005_0006_0007_0008n));
    assert.deepEqual(parseIp("fc00:0:0:34::"), v6(0xfc00_0000_0000_0034_0000_0000_0000_0000n));
  });

  test("upper-case hex digits", () => {
    assert.deepEqual(parseIp("FC00::ABCD"), v6(0xfc00_0000_0000_0000_0000_0000_0000_abcdn));
  });

  test("embedded IPv4 tail", () => {
    assert.deepEqual(parseIp("::ffff:1.2.3.4"), v6(0x0000_0000_0000_0000_0000_ffff_0102_0304n));
    assert.deepEqual(parseIp("64:ff9b::192.0.2.33"), v6(0x0064_ff9b_0000_0000_0000_0000_c000_0221n));
  });

  for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1", ":::", "2001:db8:::1"]) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseIp(bad), /is not an IP address/);
    });
  }
});

describe("formatIp", () => {
  test("IPv4 dotted quad", () => {
    assert.equal(formatIp(v4(0n)), "0.0.0.0");
    assert.equal(formatIp(v4(0x0a05_3401n)), "10.5.52.1");
    assert.equal(formatIp(v4(0xffff_ffffn)), "255.255.255.255");
  });

  test("IPv6 RFC 5952: lower case, no leading zeros", () => {
    assert.equal(formatIp(v6(0x2001_0db8_00aa_0bbb_0ccc_0ddd_0eee_0fffn)), "2001:db8:aa:bbb:ccc:ddd:eee:fff");
    assert.equal(formatIp(v6(0xfc00_0000_0000_0000_0000_0000_0000_abcdn)), "fc00::abcd");
  });

  test("IPv6 RFC 5952: all zeros and loopback", () => {
    assert.equal(formatIp(v6(0n)), "::");
    assert.equal(formatIp(v6(1n)), "::1");
    assert.equal(formatIp(v6(0x0001_0000_0000_0000_0000_0000_0000_0000n)), "1::");
  });

  test("IPv6 RFC 5952: a single zero hextet is not compressed", () => {
    assert.equal(formatIp(v6(0x2001_0db8_0000_0001_0001_0001_0001_0001n)), "2001:db8:0:1:1:1:1:1");
  });

  test("IPv6 RFC 5952: the longest run of zeros is compressed", () => {
    assert.equal(formatIp(v6(0x0001_0000_0000_0002_0000_0000_0000_0003n)), "1:0:0:2::3");
    assert.equal(formatIp(v6(0x2001_0db8_0000_0000_0001_0000_0000_0001n)), "2001:db8::1:0:0:1");
  });

  test("IPv6 RFC 5952: on a tie the first run is compressed", () => {
    assert.equal(formatIp(v6(0x2001_0000_0000_0001_0000_0000_0001_0001n)), "2001::1:0:0:1:1");
  });

  test("IPv6 compression at the end of the address", () => {
    assert.equal(formatIp(v6(0xfc00_0000_0000_0034_0000_0000_0000_0000n)), "fc00:0:0:34::");
  });

  for (const text of ["10.244.3.7", "2001:db8::1", "fe80::1:2", "::", "1::", "fc00:0:0:34::1", "1:2:3:4:5:6:7:8"]) {
    test(`round trip ${text}`, () => {
      assert.equal(formatIp(parseIp(text)), text);
    });
  }

  test("non-canonical IPv6 input is printed canonically", () => {
    assert.equal(formatIp(parseIp("2001:0DB8:0000:0000:0000:0000:0000:0001")), "2001:db8::1");
    assert.equal(formatIp(parseIp("1:0:0:0:0:0:0:0")), "1::");
  });
});

describe("parseCidr", () => {
  test("IPv4 network", () => {
    assert.deepEqual(parseCidr("10.244.0.0/16"), c4(0x0af4_0000n, 16));
    assert.deepEqual(parseCidr("0.0.0.0/0"), c4(0n, 0));
    assert.deepEqual(parseCidr("10.5.52.7/32"), c4(0x0a05_3407n, 32));
  });

  test("IPv6 network", () => {
    assert.deepEqual(parseCidr("fc00::/48"), c6(0xfc00_0000_0000_0000_0000_0000_0000_0000n, 48));
    assert.deepEqual(parseCidr("::/0"), c6(0n, 0));
    assert.deepEqual(parseCidr("::1/128"), c6(1n, 128));
  });

  test("non-strict (default) clears host bits", () => {
    assert.deepEqual(parseCidr("10.5.52.1/24"), c4(0x0a05_3400n, 24));
    assert.deepEqual(parseCidr("10.244.255.255/16", false), c4(0x0af4_0000n, 16));
    assert.deepEqual(parseCidr("fc00:0:0:34::1/64"), c6(0xfc00_0000_0000_0034_0000_0000_0000_0000n, 64));
  });

  test("strict accepts a network address", () => {
    assert.deepEqual(parseCidr("10.5.52.0/24", true), c4(0x0a05_3400n, 24));
    assert.deepEqual(parseCidr("fc00:0:0:34::/64", true), c6(0xfc00_0000_0000_0034_0000_0000_0000_0000n, 64));
  });

  test("strict refuses host bits", () => {
    assert.throws(() => parseCidr("10.5.52.1/24", true), /host bits set/);
    assert.throws(() => parseCidr("fc00::1/64", true), /host bits set/);
  });

  test("missing prefix length", () => {
    assert.throws(() => parseCidr("10.0.0.0"), /is not a CIDR/);
  });

  for (const bad of ["10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "10.0.0.0/1234", "10.0.0.0/ 8", "10.0.0.0/8/8"]) {
    test(`invalid prefix length ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseCidr(bad), /invalid prefix length/);
    });
  }

  test("prefix length over the family's bits", () => {
    assert.throws(() => parseCidr("10.0.0.0/33"), /prefix length over 32/);
    assert.throws(() => parseCidr("fc00::/129"), /prefix length over 128/);
  });

  test("bad address part", () => {
    assert.throws(() => parseCidr("10.0.0.300/24"), /is not an IP address/);
  });
});

describe("formatCidr and helpers", () => {
  test("formatCidr", () => {
    assert.equal(formatCidr(c4(0x0af4_0000n, 16)), "10.244.0.0/16");
    assert.equal(formatCidr(c6(0xfc00_0000_0000_0034_0000_0000_0000_0000n, 64)), "fc00:0:0:34::/64");
  });

  test("cidr() clears host bits", () => {
    assert.deepEqual(cidr(4, 0x0a05_34ffn, 24), c4(0x0a05_3400n, 24));
    assert.deepEqual(cidr(6, 0xfc00_0000_0000_0034_0000_0000_0000_0001n, 64), c6(0xfc00_0000_0000_0034_0000_0000_0000_0000n, 64));
  });

  test("bitsOf, cidrSize and cidrEnd", () => {
    assert.equal(bitsOf(4), 32);
    assert.equal(bitsOf(6), 128);
    assert.equal(cidrSize(c4(0x0a05_3400n, 24)), 256n);
    assert.equal(cidrSize(c6(0n, 64)), 0x1_0000_0000_0000_0000n);
    // 10.244.0.0/16 ends just before 10.245.0.0
    assert.equal(cidrEnd(c4(0x0af4_0000n, 16)), 0x0af5_0000n);
  });

  test("cidrHost: offset 1 is the first host address", () => {
    assert.deepEqual(cidrHost(c4(0x0a05_3400n, 24), 1n), v4(0x0a05_3401n));
  });

  test("cidrEquals and ipEquals", () => {
    assert.equal(cidrEquals(parseCidr("10.0.0.0/8"), c4(0x0a00_0000n, 8)), true);
    assert.equal(cidrEquals(parseCidr("10.0.0.0/8"), c4(0x0a00_0000n, 9)), false);
    assert.equal(cidrEquals(c4(0n, 0), c6(0n, 0)), false);
    assert.equal(ipEquals(v4(1n), v4(1n)), true);
    assert.equal(ipEquals(v4(1n), v6(1n)), false);
  });

  test("isLinkLocal", () => {
    assert.equal(isLinkLocal(parseIp("169.254.10.1")), true);
    assert.equal(isLinkLocal(parseIp("169.255.0.1")), false);
    assert.equal(isLinkLocal(parseIp("fe80::1")), true);
    assert.equal(isLinkLocal(parseIp("febf::1")), true);
    assert.equal(isLinkLocal(parseIp("fec0::1")), false);
  });
});

describe("containment and overlap", () => {
  const net = parseCidr("10.244.0.0/16");

  test("cidrContainsIp", () => {
    assert.equal(cidrContainsIp(net, parseIp("10.244.0.0")), true);
    assert.equal(cidrContainsIp(net, parseIp("10.244.255.255")), true);
    assert.equal(cidrContainsIp(net, parseIp("10.245.0.0")), false);
    assert.equal(cidrContainsIp(net, parseIp("10.243.255.255")), false);
    assert.equal(cidrContainsIp(parseCidr("0.0.0.0/0"), parseIp("203.0.113.9")), true);
  });

  test("cidrContainsIp never matches across families", () => {
    assert.equal(cidrContainsIp(parseCidr("::/0"), parseIp("10.0.0.1")), false);
    assert.equal(cidrContainsIp(parseCidr("0.0.0.0/0"), parseIp("::1")), false);
  });

  test("cidrContains", () => {
    assert.equal(cidrContains(net, parseCidr("10.244.3.0/24")), true);
    assert.equal(cidrContains(net, net), true);
    assert.equal(cidrContains(net, parseCidr("10.244.0.0/15")), false);
    assert.equal(cidrContains(net, parseCidr("10.245.3.0/24")), false);
    assert.equal(cidrContains(parseCidr("10.244.3.0/24"), net), false);
    assert.equal(cidrContains(parseCidr("fc00::/48"), parseCidr("fc00:0:0:34::/64")), true);
    assert.equal(cidrContains(parseCidr("fc00::/48"), parseCidr("fc01::/64")), false);
  });

  test("cidrContains never matches across families", () => {
    assert.equal(cidrContains(parseCidr("::/0"), parseCidr("10.0.0.0/8")), false);
  });

  test("cidrOverlaps is symmetric", () => {
    assert.equal(cidrOverlaps(net, parseCidr("10.244.3.0/24")), true);
    assert.equal(cidrOverlaps(parseCidr("10.244.3.0/24"), net), true);
    assert.equal(cidrOverlaps(parseCidr("10.244.2.0/23"), parseCidr("10.244.3.0/24")), true);
    assert.equal(cidrOverlaps(parseCidr("10.244.2.0/24"), parseCidr("10.244.3.0/24")), false);
    assert.equal(cidrOverlaps(parseCidr("10.244.0.0/16"), parseCidr("10.245.0.0/16")), false);
    assert.equal(cidrOverlaps(parseCidr("0.0.0.0/0"), parseCidr("::/0")), false);
  });
});

describe("ipToBytes / ipFromBytes", () => {
  test("IPv4 to 4 bytes, network order", () => {
    assert.deepEqual([...ipToBytes(parseIp("10.5.52.1"))], [10, 5, 52, 1]);
  });

  test("IPv6 to 16 bytes, network order", () => {
    assert.deepEqual([...ipToBytes(parseIp("2001:db8::1"))], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });

  test("from bytes", () => {
    assert.deepEqual(ipFromBytes(Uint8Array.from([192, 168, 1, 1])), v4(0xc0a8_0101n));
    assert.deepEqual(ipFromBytes(Uint8Array.from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2])), v6(0xfe80_0000_0000_0000_0000_0000_0000_0002n));
  });

  for (const text of ["0.0.0.0", "255.255.255.255", "10.244.1.0", "::", "::ffff:1.2.3.4", "fc00:0:0:34::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]) {
    test(`round trip ${text}`, () => {
      const addr = parseIp(text);
      assert.deepEqual(ipFromBytes(ipToBytes(addr)), addr);
    });
  }

  test("other lengths are rejected", () => {
    assert.throws(() => ipFromBytes(Uint8Array.from([1, 2, 3])), /address of 3 bytes/);
    assert.throws(() => ipFromBytes(new Uint8Array(6)), /address of 6 bytes/);
    assert.throws(() => ipFromBytes(new Uint8Array(0)), /address of 0 bytes/);
  });
});

describe("parseMac / formatMac", () => {
  test("parses six colon-separated hex bytes, either case", () => {
    assert.deepEqual([...parseMac("0e:2a:00:11:aa:FF")], [0x0e, 0x2a, 0x00, 0x11, 0xaa, 0xff]);
  });

  test("formats lower case with leading zeros", () => {
    assert.equal(formatMac(Uint8Array.from([0x0e, 0x2a, 0x00, 0x01, 0xab, 0xff])), "0e:2a:00:01:ab:ff");
  });

  test("round trip normalises case", () => {
    assert.equal(formatMac(parseMac("0E:2A:0A:F4:01:00")), "0e:2a:0a:f4:01:00");
  });

  for (const bad of ["", "0e:2a:00:11:aa", "0e:2a:00:11:aa:ff:01", "0e-2a-00-11-aa-ff", "e:2a:00:11:aa:ff", "0e:2a:00:11:aa:fg", "0e:2a:00:11:aa:fff", "0e2a.0011.aaff"]) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseMac(bad), /is not a MAC address/);
    });
  }
});
