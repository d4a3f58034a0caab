import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../src/dataplane/exec.js";
import { binPath } from "../../src/sandbox/paths.js";
import { startTestEtcd, type TestEtcd } from "../helpers/etcd.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const agent = (args: string[], env: NodeJS.ProcessEnv = {}) => run("env", [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, binPath("sluice-agent"), ...args], undefined, 20_000);

describe("agent start-up validation", () => {
  test("a bad flag value exits 2 naming the flag and the reason", async () => {
    const r = await agent(["--public-ip", "10.0.0.300"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--public-ip: must be an IPv4 address/);
  });

  test("an unknown flag is refused", async () => {
    const r = await agent(["--no-such-flag"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--no-such-flag: is not a known flag/);
  });

  test("flannel's environment variables are honoured (FLANNELD_IPTABLES_RESYNC)", async () => {
    const r = await agent([], { FLANNELD_IPTABLES_RESYNC: "soon" });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--iptables-resync: "soon" is not seconds or a duration/);
  });

  test("--help lists flanneld's flags with their defaults", async () => {
    const r = await agent(["--help"]);
    assert.equal(r.code, 0);
    for (const f of ["--etcd-endpoints", "--etcd-prefix", "--iface", "--iface-regex", "--iface-can-reach", "--subnet-file", "--subnet-lease-renew-margin", "--ip-masq", "--healthz-port", "--iptables-resync", "--iptables-forward-rules"]) assert.ok(r.stdout.includes(f), f);
    assert.match(r.stdout, /\(default \/coreos\.com\/network\)/);
  });
});

describe("agent with an invalid network config in etcd", () => {
  let etcd: TestEtcd;
  const prefix = uniquePrefix("cfg");
  before(async () => {
    etcd = await startTestEtcd();
    await makeNetns(`${prefix}-n`);
  });
  after(async () => {
    await etcd.stop();
    await removeNetnsWithPrefix(prefix);
  });

  test("exits 1 with a message that names the key", async () => {
    await etcd.client.put("/coreos.com/network/config").value(JSON.stringify({ Network: "10.244.0.0/16", SubnetLen: 31 }));
    const r = await run("ip", ["netns", "exec", `${prefix}-n`, process.execPath, binPath("sluice-agent"), ...etcd.flags(etcd.server.endpoints[0])], undefined, 20_000);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /network config at \/coreos\.com\/network\/config: SubnetLen: must be \/30 or shorter/);
  });
});
