import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/errors.js";
import { rejects } from "../helpers/configError.js";
import { DEFAULT_VXLAN_PORT, type VxlanBackend, vxlanPort } from "../../src/backends/vxlan/spec.js";
import { type NetworkConfig, type SubnetPool, parseNetworkConfig } from "../../src/config/networkConfig.js";


const reject = (input: string | object, field: string, why: RegExp) => rejects(() => parseNetworkConfig(input), field, why);

const defaultVxlan: VxlanBackend = { type: "vxlan", vni: 1, port: 0, directRouting: false, mtu: undefined, gbp: false, learning: false, macPrefix: "0e:2a" };

function v4Pool(network: bigint, prefixLen: number, subnetLen: number, subnetMin: bigint, subnetMax: bigint): SubnetPool {
  return { family: 4, network: { family: 4, ip: network, prefixLen }, subnetLen, subnetMin, subnetMax };
}

function v6Pool(network: bigint, prefixLen: number, subnetLen: number, subnetMin: bigint, subnetMax: bigint): SubnetPool {
  return { family: 6, network: { family: 6, ip: network, prefixLen }, subnetLen, subnetMin, subnetMax };
}

// 10.244.0.0/16 with /24 subnets: 10.244.1.0 .. 10.244.255.0
const pool10244 = v4Pool(0x0af4_0000n, 16, 24, 0x0af4_0100n, 0x0af4_ff00n);

describe("kube-flannel.yml net-conf.json", () => {
  test("parses unchanged (EnableNFTables false)", () => {
    const cfg = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}');
    const expected: NetworkConfig = { enableIPv4: true, enableIPv6: false, ipv4: pool10244, ipv6: undefined, backend: defaultVxlan, enableNFTables: false };
    assert.deepEqual(cfg, expected);
  });

  test("EnableNFTables: true is kept (the agent's --dataplane auto follows it); a non-boolean is refused by name", () => {
    assert.equal(parseNetworkConfig('{"Network":"10.244.0.0/16","EnableNFTables":true}').enableNFTables, true);
    assert.equal(parseNetworkConfig('{"Network":"10.244.0.0/16"}').enableNFTables, false);
    assert.throws(() => parseNetworkConfig('{"Network":"10.244.0.0/16","EnableNFTables":"yes"}'), /EnableNFTables/);
  });

  test("pretty-printed JSON with whitespace and newlines", () => {
    const text = '{\n  "Network": "10.244.0.0/16",\n  "EnableNFTables": false,\n  "Backend": {\n    "Type": "vxlan"\n  }\n}\n';
    assert.deepEqual(parseNetworkConfig(text).ipv4, pool10244);
  });

  test("an already-parsed object is accepted too", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }).ipv4, pool10244);
  });
});

describe("SubnetLen", () => {
  test("defaults to 24 when the Network prefix is /22 or shorter", () => {
    assert.equal(parseNetworkConfig({ Network: "10.0.0.0/8" }).ipv4?.subnetLen, 24);
    assert.equal(parseNetworkConfig({ Network: "10.244.0.0/16" }).ipv4?.subnetLen, 24);
    assert.deepEqual(parseNetworkConfig({ Network: "10.0.0.0/22" }).ipv4, v4Pool(0x0a00_0000n, 22, 24, 0x0a00_0100n, 0x0a00_0300n));
  });

  test("defaults to prefix+2 for networks smaller than /22", () => {
    // 10.0.0.0/23 -> /25 subnets: 10.0.0.128 .. 10.0.1.128
    assert.deepEqual(parseNetworkConfig({ Network: "10.0.0.0/23" }).ipv4, v4Pool(0x0a00_0000n, 23, 25, 0x0a00_0080n, 0x0a00_0180n));
    assert.equal(parseNetworkConfig({ Network: "10.0.0.0/26" }).ipv4?.subnetLen, 28);
  });

  test("a /28 network is the smallest accepted: /30 subnets 10.0.0.4 .. 10.0.0.12", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.0.0.0/28" }).ipv4, v4Pool(0x0a00_0000n, 28, 30, 0x0a00_0004n, 0x0a00_000cn));
  });

  test("a network smaller than /28 is rejected", () => {
    reject({ Network: "10.0.0.0/29" }, "Network", /too small.*\/28/);
    reject({ Network: "10.0.0.0/32" }, "Network", /too small/);
  });

  test("0 means unset, as in flannel", () => {
    assert.equal(parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 0 }).ipv4?.subnetLen, 24);
  });

  test("an explicit value is used", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 26 }).ipv4, v4Pool(0x0af4_0000n, 16, 26, 0x0af4_0040n, 0x0af4_ffc0n));
  });

  test("/30 is the longest accepted, /31 and /32 are rejected", () => {
    assert.equal(parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 30 }).ipv4?.subnetLen, 30);
    reject({ Network: "10.244.0.0/16", SubnetLen: 31 }, "SubnetLen", /\/30 or shorter.*got 31/);
    reject({ Network: "10.244.0.0/16", SubnetLen: 32 }, "SubnetLen", /\/30 or shorter/);
  });

  test("over 32 is rejected", () => {
    reject({ Network: "10.244.0.0/16", SubnetLen: 33 }, "SubnetLen", /32/);
  });

  test("must leave room for four subnets (prefix+2)", () => {
    assert.equal(parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 18 }).ipv4?.subnetLen, 18);
    reject({ Network: "10.244.0.0/16", SubnetLen: 17 }, "SubnetLen", /at least 18.*four subnets.*got 17/);
    reject({ Network: "10.244.0.0/16", SubnetLen: 16 }, "SubnetLen", /at least 18/);
  });

  test("an explicit SubnetLen on a /29 network is judged as SubnetLen", () => {
    reject({ Network: "10.0.0.0/29", SubnetLen: 30 }, "SubnetLen", /at least 31/);
  });

  test("must be a whole number", () => {
    reject({ Network: "10.244.0.0/16", SubnetLen: 24.5 }, "SubnetLen", /int/i);
    reject({ Network: "10.244.0.0/16", SubnetLen: "24" }, "SubnetLen", /number/);
    reject({ Network: "10.244.0.0/16", SubnetLen: -1 }, "SubnetLen", /0/);
  });
});

describe("Network", () => {
  test("is required when IPv4 is enabled", () => {
    reject({}, "Network", /required/);
    reject({ Backend: { Type: "vxlan" } }, "Network", /required when EnableIPv4/);
  });

  test("must be a CIDR", () => {
    reject({ Network: "10.244.0.0" }, "Network", /CIDR/);
    reject({ Network: "10.244.0.0/40" }, "Network", /CIDR/);
    reject({ Network: "banana" }, "Network", /CIDR/);
    reject({ Network: 10 }, "Network", /string/);
  });

  test("must be IPv4", () => {
    reject({ Network: "fc00::/48" }, "Network", /IPv4/);
  });

  test("host bits are cleared, as Go's ParseCIDR does", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.7.9/16" }).ipv4, pool10244);
  });
});

describe("SubnetMin / SubnetMax", () => {
  test("default to the second subnet and the last subnet", () => {
    const pool = parseNetworkConfig({ Network: "10.244.0.0/16" }).ipv4;
    assert.equal(pool?.subnetMin, 0x0af4_0100n); // 10.244.1.0
    assert.equal(pool?.subnetMax, 0x0af4_ff00n); // 10.244.255.0
  });

  test("explicit values inside the network and aligned are used", () => {
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetMin: "10.244.10.0", SubnetMax: "10.244.20.0" });
    assert.deepEqual(cfg.ipv4, v4Pool(0x0af4_0000n, 16, 24, 0x0af4_0a00n, 0x0af4_1400n));
  });

  test("the network's first subnet may be chosen explicitly", () => {
    assert.equal(parseNetworkConfig({ Network: "10.244.0.0/16", SubnetMin: "10.244.0.0" }).ipv4?.subnetMin, 0x0af4_0000n);
  });

  test("an empty string is not an address (flannel refuses it too)", () => {
    reject({ Network: "10.244.0.0/16", SubnetMin: "" }, "SubnetMin", /IP address/);
    reject({ Network: "10.244.0.0/16", SubnetMax: "" }, "SubnetMax", /IP address/);
  });

  test("must be inside the Network", () => {
    reject({ Network: "10.244.0.0/16", SubnetMin: "10.243.1.0" }, "SubnetMin", /10\.243\.1\.0 is not inside Network 10\.244\.0\.0\/16/);
    reject({ Network: "10.244.0.0/16", SubnetMax: "10.245.0.0" }, "SubnetMax", /not inside Network/);
  });

  test("must be on a SubnetLen boundary", () => {
    reject({ Network: "10.244.0.0/16", SubnetMin: "10.244.1.5" }, "SubnetMin", /not on a \/24 boundary/);
    reject({ Network: "10.244.0.0/16", SubnetMax: "10.244.200.128" }, "SubnetMax", /not on a \/24 boundary/);
    reject({ Network: "10.244.0.0/16", SubnetLen: 20, SubnetMin: "10.244.1.0" }, "SubnetMin", /\/20 boundary/);
  });

  test("must be IP addresses of the right family", () => {
    reject({ Network: "10.244.0.0/16", SubnetMin: "ten" }, "SubnetMin", /IP address/);
    reject({ Network: "10.244.0.0/16", SubnetMax: "fc00::" }, "SubnetMax", /IPv4/);
  });

  test("SubnetMin above SubnetMax is rejected", () => {
    reject({ Network: "10.244.0.0/16", SubnetMin: "10.244.20.0", SubnetMax: "10.244.10.0" }, "SubnetMin", /above SubnetMax/);
  });
});

describe("IPv6", () => {
  const fc00 = 0xfc00_0000_0000_0000_0000_0000_0000_0000n;

  test("EnableIPv4 defaults to true and EnableIPv6 to false", () => {
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", IPv6Network: "fc00::/48" });
    assert.equal(cfg.enableIPv4, true);
    assert.equal(cfg.enableIPv6, false);
    assert.equal(cfg.ipv6, undefined);
  });

  test("dual stack: IPv6SubnetLen defaults to 64 for a /48", () => {
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fc00::/48" });
    assert.equal(cfg.enableIPv4, true);
    assert.equal(cfg.enableIPv6, true);
    assert.deepEqual(cfg.ipv4, pool10244);
    // fc00:0:0:1:: .. fc00:0:0:ffff::
    assert.deepEqual(cfg.ipv6, v6Pool(fc00, 48, 64, 0xfc00_0000_0000_0001_0000_0000_0000_0000n, 0xfc00_0000_0000_ffff_0000_0000_0000_0000n));
  });

  test("IPv6-only", () => {
    const cfg = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48" });
    assert.equal(cfg.enableIPv4, false);
    assert.equal(cfg.ipv4, undefined);
    assert.equal(cfg.ipv6?.subnetLen, 64);
  });

  test("IPv6SubnetLen defaults to 64 up to /62, then prefix+2", () => {
    assert.equal(parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/62" }).ipv6?.subnetLen, 64);
    assert.equal(parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/63" }).ipv6?.subnetLen, 65);
    // fc00::/124 -> /126 subnets fc00::4 .. fc00::c
    assert.deepEqual(parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/124" }).ipv6, v6Pool(fc00, 124, 126, fc00 + 4n, fc00 + 12n));
  });

  test("a network smaller than /124 is rejected", () => {
    rejects(() => parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/125" }), "IPv6Network", /too small.*\/124/);
  });

  test("IPv6SubnetLen over 126 is rejected", () => {
    assert.equal(parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", IPv6SubnetLen: 126 }).ipv6?.subnetLen, 126);
    reject({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", IPv6SubnetLen: 127 }, "IPv6SubnetLen", /\/126 or shorter/);
    reject({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", IPv6SubnetLen: 129 }, "IPv6SubnetLen", /128/);
  });

  test("IPv6SubnetLen must leave room for four subnets", () => {
    reject({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", IPv6SubnetLen: 49 }, "IPv6SubnetLen", /at least 50/);
  });

  test("IPv6Network is required when EnableIPv6 is true", () => {
    reject({ Network: "10.244.0.0/16", EnableIPv6: true }, "IPv6Network", /required when EnableIPv6/);
  });

  test("IPv6Network must be IPv6", () => {
    reject({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "10.0.0.0/8" }, "IPv6Network", /IPv6/);
  });

  test("IPv6SubnetMin / IPv6SubnetMax explicit, inside and aligned", () => {
    const cfg = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48", IPv6SubnetMin: "fc00:0:0:10::", IPv6SubnetMax: "fc00:0:0:20::" });
    assert.equal(cfg.ipv6?.subnetMin, 0xfc00_0000_0000_0010_0000_0000_0000_0000n);
    assert.equal(cfg.ipv6?.subnetMax, 0xfc00_0000_0000_0020_0000_0000_0000_0000n);
  });

  test("IPv6SubnetMin / IPv6SubnetMax outside or unaligned are rejected", () => {
    const base = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48" };
    reject({ ...base, IPv6SubnetMin: "fc01::" }, "IPv6SubnetMin", /not inside IPv6Network fc00::\/48/);
    reject({ ...base, IPv6SubnetMax: "fc00:0:0:20::1" }, "IPv6SubnetMax", /not on a \/64 boundary/);
    reject({ ...base, IPv6SubnetMin: "10.0.0.0" }, "IPv6SubnetMin", /IPv6/);
  });

  test("both families disabled is rejected", () => {
    reject({ Network: "10.244.0.0/16", EnableIPv4: false, EnableIPv6: false }, "EnableIPv4", /at least one/);
  });

  test("EnableIPv6 must be a boolean", () => {
    reject({ Network: "10.244.0.0/16", EnableIPv6: "true" }, "EnableIPv6", /boolean/);
  });
});

describe("Backend", () => {
  test("defaults to vxlan with flannel's defaults", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16" }).backend, defaultVxlan);
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: {} }).backend, defaultVxlan);
  });

  test("Port 0 means the kernel default 8472", () => {
    const b = parseNetworkConfig({ Network: "10.244.0.0/16" }).backend as VxlanBackend;
    assert.equal(b.port, 0);
    assert.equal(vxlanPort(b), 8472);
    assert.equal(DEFAULT_VXLAN_PORT, 8472);
  });

  test("explicit vxlan settings", () => {
    const b = parseNetworkConfig({
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan", VNI: 4096, Port: 4789, DirectRouting: true, MTU: 1400, GBP: true, Learning: true, MacPrefix: "AA:BB" },
    }).backend;
    assert.deepEqual(b, { type: "vxlan", vni: 4096, port: 4789, directRouting: true, mtu: 1400, gbp: true, learning: true, macPrefix: "aa:bb" });
    assert.equal(vxlanPort(b as VxlanBackend), 4789);
  });

  test("host-gw", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }).backend, { type: "host-gw" });
  });

  test("unknown backend keys are ignored", () => {
    assert.deepEqual(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Flavour: "strawberry" } }).backend, defaultVxlan);
  });

  test("unsupported Type is rejected, naming the supported ones", () => {
    reject({ Network: "10.244.0.0/16", Backend: { Type: "gce" } }, "Backend.Type", /"gce" is not supported.*vxlan, host-gw, wireguard, ipip, udp/);
    reject({ Network: "10.244.0.0/16", Backend: { Type: "ip-in-ip" } }, "Backend.Type", /not supported/);
    reject({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:244::/56", Backend: { Type: "ipip" } }, "EnableIPv6", /backend ipip carries IPv4 only/);
    reject({ Network: "10.244.0.0/16", Backend: { Type: 3 } }, "Backend.Type", /string/);
  });

  test("VNI must fit in 24 bits", () => {
    assert.equal((parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { VNI: 16777215 } }).backend as VxlanBackend).vni, 16777215);
    reject({ Network: "10.244.0.0/16", Backend: { VNI: 16777216 } }, "Backend.VNI", /24 bits/);
    reject({ Network: "10.244.0.0/16", Backend: { VNI: -1 } }, "Backend.VNI", /0/);
    reject({ Network: "10.244.0.0/16", Backend: { VNI: "1" } }, "Backend.VNI", /number/);
  });

  test("Port must be a UDP port", () => {
    reject({ Network: "10.244.0.0/16", Backend: { Port: 65536 } }, "Backend.Port", /65535/);
  });

  test("MTU must be at least 68", () => {
    reject({ Network: "10.244.0.0/16", Backend: { MTU: 67 } }, "Backend.MTU", /at least 68/);
  });

  test("DirectRouting must be a boolean", () => {
    reject({ Network: "10.244.0.0/16", Backend: { DirectRouting: "yes" } }, "Backend.DirectRouting", /boolean/);
  });

  test("MacPrefix must be two hex bytes", () => {
    reject({ Network: "10.244.0.0/16", Backend: { MacPrefix: "0e:2a:00" } }, "Backend.MacPrefix", /two hex bytes/);
    reject({ Network: "10.244.0.0/16", Backend: { MacPrefix: "zz:2a" } }, "Backend.MacPrefix", /two hex bytes/);
  });
});

describe("JSON and unknown keys", () => {
  test("invalid JSON is rejected at the root", () => {
    reject('{"Network": "10.244.0.0/16",', "(root)", /not valid JSON/);
    reject("", "(root)", /not valid JSON/);
  });

  test("JSON that is not an object is rejected", () => {
    reject("[]", "(root)", /JSON object/);
    reject("null", "(root)", /JSON object/);
    reject('"10.244.0.0/16"', "(root)", /JSON object/);
    reject("42", "(root)", /JSON object/);
  });

  test("unknown keys are accepted, as flannel ignores them", () => {
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", Networks: ["10.245.0.0/16"], Comment: "hi" });
    assert.deepEqual(cfg, { enableIPv4: true, enableIPv6: false, ipv4: pool10244, ipv6: undefined, backend: defaultVxlan, enableNFTables: false });
  });

  test("the source is part of the message", () => {
    assert.throws(
      () => parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 31 }, "/etc/kube-flannel/net-conf.json"),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.source, "/etc/kube-flannel/net-conf.json");
        assert.match(err.message, /^\/etc\/kube-flannel\/net-conf\.json: SubnetLen: /);
        return true;
      },
    );
  });
});
