import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { isValidIfName, isValidNetnsPath, readCniEnv } from "../../src/cni/env.js";
import { CniError } from "../../src/cni/errors.js";
import { type WiringPlan, MAX_ALIAS_BYTES, hostBatch, ownerAlias, parseOwnerAlias, podBatch } from "../../src/cni/wiring.js";

const plan = (o: Partial<WiringPlan> = {}): WiringPlan => ({ network: "sluice", containerId: "ctr-1", pod: { namespace: "ns1", pod: "web-0" }, netns: "/var/run/netns/p1", podIface: "eth0", hostIface: "slc0123456789ab", podMac: "02:00:00:00:00:01", mtu: 1450, ipv4: "10.244.1.2", ipv6: undefined, ...o });

describe("names that go into ip -batch lines", () => {
  test("CNI_IFNAME and CNI_NETNS: what ip -batch could misread is refused", () => {
    for (const ok of ["eth0", "net1", "eth0.100", "veth_a-b"]) assert.ok(isValidIfName(ok), ok);
    for (const bad of ["eth0#x", "a b", 'e"0', "e'0", "e\\0", "", ".", "..", "sixteen-chars-xx", "e:0", "e/0"]) assert.ok(!isValidIfName(bad), bad);
    for (const ok of ["/var/run/netns/cni-1234-abcd", "/proc/42/ns/net", "/run/docker/netns/ab12", "/run/netns/x:y@z+w,v=u"]) assert.ok(isValidNetnsPath(ok), ok);
    for (const bad of ["relative", "/var/run/netns/a#b", "/a b", '/a"b', "/a'b", "/a\\b", "/a\nb"]) assert.ok(!isValidNetnsPath(bad), JSON.stringify(bad));
  });

  test("ADD and CHECK refuse them naming the variable; DEL, which passes them as argv only, takes what older plugins accepted", () => {
    const env = (cmd: string, o: Record<string, string>): NodeJS.ProcessEnv => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/p", CNI_IFNAME: "eth0", ...o });
    for (const cmd of ["ADD", "CHECK"]) {
      assert.throws(() => readCniEnv(env(cmd, { CNI_IFNAME: "eth0#x" })), (e: unknown) => e instanceof CniError && e.code === 4 && /^CNI_IFNAME "eth0#x" must be/.test(e.message));
      assert.throws(() => readCniEnv(env(cmd, { CNI_NETNS: "/var/run/netns/p#x" })), (e: unknown) => e instanceof CniError && e.code === 4 && /^CNI_NETNS /.test(e.message));
    }
    assert.equal(readCniEnv(env("DEL", { CNI_IFNAME: "eth0#x", CNI_NETNS: "/var/run/netns/p#x" })).ifName, "eth0#x");
  });

  test("the batch builders refuse an unchecked name instead of cutting a line short", () => {
    assert.throws(() => hostBatch(plan({ netns: "/var/run/netns/a#b" })), /CNI_NETNS "\/var\/run\/netns\/a#b" cannot go into an ip -batch line/);
    assert.throws(() => podBatch(plan({ podIface: "eth0#x" })), /CNI_IFNAME/);
    assert.deepEqual(hostBatch(plan()).slice(0, 2), [
      "link add slc0123456789ab mtu 1450 address ee:ee:ee:ee:ee:ee up type veth peer name eth0 mtu 1450 address 02:00:00:00:00:01 netns /var/run/netns/p1",
      "link set slc0123456789ab alias sluice/sluice/ctr-1/eth0/ns1/web-0",
    ]);
  });
});

describe("the host veth's alias: owner and pod", () => {
  test("round trip; an older plugin's alias names no pod", () => {
    assert.deepEqual(parseOwnerAlias(ownerAlias("sluice", "ctr-1", "eth0", { namespace: "ns1", pod: "web-0" })), { network: "sluice", containerId: "ctr-1", ifName: "eth0", pod: "ns1/web-0" });
    assert.deepEqual(parseOwnerAlias("sluice/sluice/ctr-1/eth0"), { network: "sluice", containerId: "ctr-1", ifName: "eth0", pod: undefined });
    for (const bad of ["", "other/x/y/z", "sluice/a/b", "sluice/a//c", "sluice/a/b/c/d"]) assert.equal(parseOwnerAlias(bad), undefined, bad);
  });

  test("a long pod name is hashed so that the alias fits; distinct long names stay distinct", () => {
    const long = (c: string): string => `${"p".repeat(200)}${c}`;
    const a = ownerAlias("sluice", "c".repeat(64), "eth0", { namespace: "n".repeat(63), pod: long("a") });
    const b = ownerAlias("sluice", "c".repeat(64), "eth0", { namespace: "n".repeat(63), pod: long("b") });
    assert.ok(Buffer.byteLength(a) <= MAX_ALIAS_BYTES, `${Buffer.byteLength(a)} bytes`);
    assert.notEqual(parseOwnerAlias(a)?.pod, parseOwnerAlias(b)?.pod);
    assert.match(parseOwnerAlias(a)?.pod ?? "", /^n{63}\/~[0-9a-f]{40}$/);
    assert.throws(() => hostBatch(plan({ network: "x".repeat(240) })), /longer than the kernel keeps/);
  });
});
