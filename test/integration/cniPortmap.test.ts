import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { ip } from "../../src/sandbox/netns.js";
import { type CniNode, type ConfList, invokeCni, makeCniNode, podArgs, runConfList, startEcho, tcpReach } from "../helpers/cni.js";
import { uniquePrefix } from "../helpers/netns.js";

const PORTMAP = "/usr/lib/cni/portmap";
const skip = existsSync(PORTMAP) ? false : `${PORTMAP} is missing (Debian's containernetworking-plugins; scripts/setup.sh installs it)`;

describe("sluice-cni chained with the reference portmap plugin", { skip }, () => {
  const prefix = uniquePrefix("cnim");
  let node: CniNode;
  // portmap 1.1.x speaks CNI up to 1.0.0, so the lists say 1.0.0 (and our result follows).
  const list = (subnetFile: string, name = "sluice"): ConfList => ({
    cniVersion: "1.0.0",
    name,
    plugins: [
      { type: "sluice", subnetFile, dataDir: node.dataDir, nodeName: `${prefix}-node` },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  });
  const natRules = async (cmd: string): Promise<string> => (await run("ip", ["netns", "exec", node.ns, cmd, "-t", "nat"])).stdout;

  before(async () => {
    node = await makeCniNode(prefix, 34, "10.244.13.1/24");
  });
  after(async () => {
    await node?.destroy();
  });

  test("IPv4: a hostPort on the node address reaches a TCP server in the pod until DEL", async () => {
    const conflist = list(node.subnetFile);
    const pod = await node.pod("web");
    const call = { containerId: "ctr-web", netns: pod, ifName: "eth0", args: podArgs("ns1", "web"), capabilityArgs: { portMappings: [{ hostPort: 18080, containerPort: 8080, protocol: "tcp" }] } };
    const add = await runConfList(node.ns, conflist, "ADD", call);
    assert.ok(!add.failed, add.failed?.stdout + (add.failed?.stderr ?? ""));
    assert.ok(add.result, "the chain returns a result");
    await startEcho(pod, 8080);
    assert.ok(await tcpReach(node.ext, node.nodeIp, 18080), "ext -> node:18080 is forwarded to pod:8080");
    assert.match(await natRules("iptables-save"), /--dport 18080 -j DNAT --to-destination 10\.244\.13\.\d+:8080/);

    // Our CHECK takes the chain's final result as prevResult. (Not the whole chain: portmap
    // 1.1.x's own CHECK looks for each family's rules with both iptables and ip6tables and
    // so always fails; containernetworking/plugins#819.)
    const check = await invokeCni(node.ns, { command: "CHECK", containerId: call.containerId, netns: pod, ifName: "eth0", args: call.args, conf: { ...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion, prevResult: add.result } });
    assert.equal(check.code, 0, check.stdout);

    const del = await runConfList(node.ns, conflist, "DEL", call, add.result);
    assert.ok(!del.failed, del.failed?.stdout);
    assert.ok(!(await tcpReach(node.ext, node.nodeIp, 18080)), "the hostPort is gone after DEL");
    assert.deepEqual(node.allocations(), []);
    assert.deepEqual(await node.links(), ["ext0", "lo"]);
    assert.doesNotMatch(await natRules("iptables-save"), /dport 18080/);
  });

  test("dual stack: the hostPort works over IPv4 and IPv6", async () => {
    const dual = join(node.dir, "dual.env");
    writeFileSync(dual, "FLANNEL_NETWORK=10.247.0.0/16\nFLANNEL_SUBNET=10.247.1.1/24\nFLANNEL_IPV6_NETWORK=fd10:247::/56\nFLANNEL_IPV6_SUBNET=fd10:247:0:1::1/64\nFLANNEL_MTU=1450\n");
    await ip("-n", node.ns, "addr", "add", "fd98:34::1/64", "dev", "ext0", "nodad");
    await ip("-n", node.ext, "addr", "add", "fd98:34::2/64", "dev", "eth0", "nodad");
    await ip("-n", node.ext, "-6", "route", "add", "default", "via", "fd98:34::1");
    const conflist = list(dual, "dual");
    const pod = await node.pod("web6");
    const call = { containerId: "ctr-web6", netns: pod, ifName: "eth0", args: podArgs("ns1", "web6"), capabilityArgs: { portMappings: [{ hostPort: 18081, containerPort: 8081, protocol: "tcp" }] } };
    const add = await runConfList(node.ns, conflist, "ADD", call);
    assert.ok(!add.failed, add.failed?.stdout + (add.failed?.stderr ?? ""));
    await startEcho(pod, 8081);
    assert.ok(await tcpReach(node.ext, node.nodeIp, 18081), "IPv4 hostPort");
    assert.ok(await tcpReach(node.ext, "fd98:34::1", 18081), "IPv6 hostPort");
    const check = await invokeCni(node.ns, { command: "CHECK", containerId: call.containerId, netns: pod, ifName: "eth0", args: call.args, conf: { ...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion, prevResult: add.result } });
    assert.equal(check.code, 0, check.stdout);
    const del = await runConfList(node.ns, conflist, "DEL", call, add.result);
    assert.ok(!del.failed, del.failed?.stdout);
    assert.ok(!(await tcpReach(node.ext, node.nodeIp, 18081)));
    assert.deepEqual(node.allocations("dual"), []);
    assert.doesNotMatch(await natRules("ip6tables-save"), /dport 18081/);
  });
});
