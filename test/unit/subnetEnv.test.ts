import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type SubnetEnv, parseSubnetEnv, readSubnetEnv, renderDockerOpts, renderSubnetEnv, writeFileAtomic } from "../../src/agent/subnetEnv.js";
import { parseCidr } from "../../src/model/ip.js";

const v4Only: SubnetEnv = {
  network: parseCidr("10.5.0.0/16"),
  subnet: parseCidr("10.5.52.0/24"),
  ipv6Network: undefined,
  ipv6Subnet: undefined,
  mtu: 1450,
  ipMasq: true,
};

const dual: SubnetEnv = {
  network: parseCidr("10.244.0.0/16"),
  subnet: parseCidr("10.244.3.0/24"),
  ipv6Network: parseCidr("fc00::/48"),
  ipv6Subnet: parseCidr("fc00:0:0:3::/64"),
  mtu: 1400,
  ipMasq: false,
};

const v6Only: SubnetEnv = {
  network: undefined,
  subnet: undefined,
  ipv6Network: parseCidr("fc00::/48"),
  ipv6Subnet: parseCidr("fc00:0:0:34::/64"),
  mtu: 1430,
  ipMasq: true,
};

describe("renderSubnetEnv", () => {
  test("IPv4: flannel's lines in flannel's order, subnet as its first host address", () => {
    assert.equal(renderSubnetEnv(v4Only), "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  });

  test("dual stack", () => {
    assert.equal(
      renderSubnetEnv(dual),
      [
        "FLANNEL_NETWORK=10.244.0.0/16",
        "FLANNEL_SUBNET=10.244.3.1/24",
        "FLANNEL_IPV6_NETWORK=fc00::/48",
        "FLANNEL_IPV6_SUBNET=fc00:0:0:3::1/64",
        "FLANNEL_MTU=1400",
        "FLANNEL_IPMASQ=false",
        "",
      ].join("\n"),
    );
  });

  test("IPv6 only", () => {
    assert.equal(renderSubnetEnv(v6Only), "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:34::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n");
  });

  test("small subnets keep their prefix length", () => {
    const e: SubnetEnv = { ...v4Only, network: parseCidr("10.0.0.0/28"), subnet: parseCidr("10.0.0.8/30") };
    assert.equal(renderSubnetEnv(e), "FLANNEL_NETWORK=10.0.0.0/28\nFLANNEL_SUBNET=10.0.0.9/30\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
  });
});

describe("parseSubnetEnv", () => {
  for (const [name, e] of [
    ["IPv4", v4Only],
    ["dual stack", dual],
    ["IPv6 only", v6Only],
  ] as const) {
    test(`round trip: ${name}`, () => {
      assert.deepEqual(parseSubnetEnv(renderSubnetEnv(e)), e);
    });
  }

  test("a file written by flannel", () => {
    const text = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
    assert.deepEqual(parseSubnetEnv(text), {
      network: { family: 4, ip: 0x0af4_0000n, prefixLen: 16 },
      subnet: { family: 4, ip: 0x0af4_0100n, prefixLen: 24 },
      ipv6Network: undefined,
      ipv6Subnet: undefined,
      mtu: 1450,
      ipMasq: true,
    });
  });

  test("quotes, blank lines, other variables and surrounding spaces are tolerated", () => {
    const text = '\n# written by hand\nFOO=bar\n  FLANNEL_SUBNET="10.5.52.1/24"\nFLANNEL_MTU= 1450 \nFLANNEL_IPMASQ="false"\n';
    assert.deepEqual(parseSubnetEnv(text), {
      network: undefined,
      subnet: { family: 4, ip: 0x0a05_3400n, prefixLen: 24 },
      ipv6Network: undefined,
      ipv6Subnet: undefined,
      mtu: 1450,
      ipMasq: false,
    });
  });

  test("bad values are left out rather than thrown", () => {
    const text = "FLANNEL_NETWORK=ten/8\nFLANNEL_SUBNET=\nFLANNEL_MTU=big\nFLANNEL_IPMASQ=sometimes\n";
    assert.deepEqual(parseSubnetEnv(text), { network: undefined, subnet: undefined, ipv6Network: undefined, ipv6Subnet: undefined });
  });

  test("MTU must be a positive integer", () => {
    assert.equal(parseSubnetEnv("FLANNEL_MTU=0\n").mtu, undefined);
    assert.equal(parseSubnetEnv("FLANNEL_MTU=-1\n").mtu, undefined);
    assert.equal(parseSubnetEnv("FLANNEL_MTU=1450.5\n").mtu, undefined);
  });

  test("empty text", () => {
    assert.deepEqual(parseSubnetEnv(""), { network: undefined, subnet: undefined, ipv6Network: undefined, ipv6Subnet: undefined });
  });
});

describe("renderDockerOpts (mk-docker-opts.sh)", () => {
  test("default: individual options then combined DOCKER_OPTS; Docker's --ip-masq is inverted", () => {
    assert.equal(
      renderDockerOpts(v4Only),
      [
        'DOCKER_OPT_BIP="--bip=10.5.52.1/24"',
        'DOCKER_OPT_IPMASQ="--ip-masq=false"',
        'DOCKER_OPT_MTU="--mtu=1450"',
        'DOCKER_OPTS=" --bip=10.5.52.1/24 --ip-masq=false --mtu=1450"',
        "",
      ].join("\n"),
    );
  });

  test("FLANNEL_IPMASQ=false gives --ip-masq=true", () => {
    const text = renderDockerOpts({ ...v4Only, ipMasq: false });
    assert.ok(text.includes('DOCKER_OPT_IPMASQ="--ip-masq=true"\n'));
    assert.ok(text.includes('DOCKER_OPTS=" --bip=10.5.52.1/24 --ip-masq=true --mtu=1450"\n'));
  });

  test("custom combined key only (-c -k DOCKER_NETWORK_OPTIONS)", () => {
    assert.equal(
      renderDockerOpts(v4Only, { combinedKey: "DOCKER_NETWORK_OPTIONS", individual: false, combined: true, omitIpMasq: false }),
      'DOCKER_NETWORK_OPTIONS=" --bip=10.5.52.1/24 --ip-masq=false --mtu=1450"\n',
    );
  });

  test("individual only (-i)", () => {
    assert.equal(
      renderDockerOpts(v4Only, { combinedKey: "DOCKER_OPTS", individual: true, combined: false, omitIpMasq: false }),
      'DOCKER_OPT_BIP="--bip=10.5.52.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\n',
    );
  });

  test("omitIpMasq (-m) leaves --ip-masq out everywhere", () => {
    assert.equal(
      renderDockerOpts(v4Only, { combinedKey: "DOCKER_OPTS", individual: true, combined: true, omitIpMasq: true }),
      'DOCKER_OPT_BIP="--bip=10.5.52.1/24"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPTS=" --bip=10.5.52.1/24 --mtu=1450"\n',
    );
  });

  test("dual stack: the bridge gets the IPv4 subnet", () => {
    assert.ok(renderDockerOpts(dual).startsWith('DOCKER_OPT_BIP="--bip=10.244.3.1/24"\n'));
  });

  test("without an IPv4 subnet there is nothing to give Docker", () => {
    assert.throws(() => renderDockerOpts(v6Only), /no FLANNEL_SUBNET/);
  });
});

describe("writeFileAtomic / readSubnetEnv", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-subnetenv-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("writes the content and leaves no .tmp file", async () => {
    const path = join(dir, "a", "subnet.env");
    await writeFileAtomic(path, "FLANNEL_MTU=1450\n");
    assert.equal(readFileSync(path, "utf8"), "FLANNEL_MTU=1450\n");
    assert.deepEqual(readdirSync(join(dir, "a")), ["subnet.env"]);
  });

  test("creates missing parent directories", async () => {
    const path = join(dir, "b", "c", "d", "subnet.env");
    await writeFileAtomic(path, "x\n");
    assert.equal(readFileSync(path, "utf8"), "x\n");
  });

  test("replaces an existing file", async () => {
    const path = join(dir, "e", "subnet.env");
    await writeFileAtomic(path, "old content that is longer\n");
    await writeFileAtomic(path, "new\n");
    assert.equal(readFileSync(path, "utf8"), "new\n");
    assert.deepEqual(readdirSync(join(dir, "e")), ["subnet.env"]);
  });

  test("default mode 0644, or the mode asked for", async () => {
    const p1 = join(dir, "f", "default.env");
    const p2 = join(dir, "f", "private.env");
    await writeFileAtomic(p1, "x\n");
    await writeFileAtomic(p2, "x\n", 0o600);
    assert.equal(statSync(p1).mode & 0o777, 0o644);
    assert.equal(statSync(p2).mode & 0o777, 0o600);
  });

  test("concurrent writes to the same path both succeed and leave one whole version", async () => {
    const path = join(dir, "g", "subnet.env");
    const a = "A".repeat(200_000);
    const b = "B".repeat(200_000);
    await Promise.all([writeFileAtomic(path, a), writeFileAtomic(path, b)]);
    const got = readFileSync(path, "utf8");
    assert.ok(got === a || got === b, "content must be one whole version");
    assert.deepEqual(readdirSync(join(dir, "g")), ["subnet.env"]);
  });

  test("readSubnetEnv reads back what was written", async () => {
    const path = join(dir, "h", "subnet.env");
    await writeFileAtomic(path, renderSubnetEnv(dual));
    assert.deepEqual(await readSubnetEnv(path), dual);
  });

  test("readSubnetEnv of a missing file is undefined", async () => {
    assert.equal(await readSubnetEnv(join(dir, "nope", "subnet.env")), undefined);
  });

  test("readSubnetEnv of a hand-written file", async () => {
    const path = join(dir, "hand.env");
    writeFileSync(path, "FLANNEL_SUBNET=10.5.52.1/24\n");
    assert.deepEqual(await readSubnetEnv(path), { network: undefined, subnet: { family: 4, ip: 0x0a05_3400n, prefixLen: 24 }, ipv6Network: undefined, ipv6Subnet: undefined });
  });
});
