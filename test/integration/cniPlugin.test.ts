import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, renameSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { run } from "../../src/dataplane/exec.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { ip, nsExec } from "../../src/sandbox/netns.js";
import { type CniNode, type CniReply, invokeCni, makeCniNode, netnsPath, pingFrom, podArgs, startEcho, tcpReach } from "../helpers/cni.js";
import { uniquePrefix } from "../helpers/netns.js";

const ipJson = async <T>(ns: string, ...args: string[]): Promise<T> => JSON.parse((await run("ip", ["-n", ns, "-j", ...args])).stdout || "[]") as T;
interface Addr {
  ifname: string;
  mtu: number;
  flags: string[];
  address: string;
  ifalias?: string;
  addr_info: Array<{ local: string; prefixlen: number }>;
}
interface Route {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
}

const podIp = (r: CniReply, n = 0): string => ((r.json?.["ips"] as Array<{ address: string }>)[n]?.address ?? "").split("/")[0] as string;
const errOf = (r: CniReply): { code: number; msg: string } => ({ code: r.json?.["code"] as number, msg: r.json?.["msg"] as string });

describe("sluice-cni driven as a runtime drives it", () => {
  const prefix = uniquePrefix("cnip");
  let node: CniNode;

  before(async () => {
    node = await makeCniNode(prefix, 31);
  });
  after(async () => {
    await node?.destroy();
  });

  /** What must be back to the start after a failed ADD: the node's links and the allocations. */
  const snapshot = async (network = "sluice"): Promise<{ links: string[]; allocations: string[] }> => ({ links: await node.links(), allocations: node.allocations(network) });

  test("VERSION lists every supported version, with or without a config on stdin", async () => {
    for (const conf of ['{"cniVersion":"1.1.0"}', ""]) {
      const r = await invokeCni(node.ns, { command: "VERSION", conf });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.json, { cniVersion: "1.1.0", supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
    }
  });

  test("ADD wires a veth pair Canal-style and returns a 1.1.0 result", async () => {
    const pod = await node.pod("a");
    const r = await node.add(pod, "ctr-a", "a");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const host = hostIfaceName("ns1", "a");
    const addr = podIp(r);
    assert.match(addr, /^10\.244\.7\.\d+$/);
    assert.deepEqual(r.json, {
      cniVersion: "1.1.0",
      interfaces: [
        { name: host, mac: "ee:ee:ee:ee:ee:ee", mtu: 1450 },
        { name: "eth0", mac: (r.json?.["interfaces"] as Array<{ mac: string }>)[1]?.mac, mtu: 1450, sandbox: netnsPath(pod) },
      ],
      ips: [{ interface: 1, address: `${addr}/32` }],
      routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }],
      dns: {},
    });
    assert.ok(Number(addr.split(".")[3]) >= 2, "never .0 or .1");

    // Node side: the host veth, up, MAC ee:.., proxy ARP, strict rp_filter, a /32 route.
    const [hl] = await ipJson<Addr[]>(node.ns, "link", "show", "dev", host);
    assert.ok(hl?.flags.includes("UP"));
    assert.equal(hl?.address, "ee:ee:ee:ee:ee:ee");
    assert.equal(hl?.mtu, 1450);
    assert.equal(hl?.ifalias, `sluice/sluice/ctr-a/eth0/ns1/a`, "owner and pod identity");
    assert.equal((await nsExec(node.ns, "cat", [`/proc/sys/net/ipv4/conf/${host}/proxy_arp`])).trim(), "1");
    assert.equal((await nsExec(node.ns, "cat", [`/proc/sys/net/ipv4/conf/${host}/rp_filter`])).trim(), "1", "strict reverse-path filter: no IPv4 source the pod does not own");
    const hostRoutes = await ipJson<Route[]>(node.ns, "route", "show", "dev", host);
    assert.deepEqual(hostRoutes.map((x) => [x.dst, x.scope]), [[addr, "link"]]);

    // Pod side: eth0 with the /32, the link-local gateway and the default route through it.
    const [pl] = await ipJson<Addr[]>(pod, "addr", "show", "dev", "eth0");
    assert.ok(pl?.flags.includes("UP"));
    assert.equal(pl?.mtu, 1450);
    assert.ok(pl?.addr_info.some((a) => a.local === addr && a.prefixlen === 32));
    const podRoutes = await ipJson<Route[]>(pod, "route", "show");
    assert.deepEqual(
      podRoutes.map((x) => [x.dst, x.gateway ?? "", x.dev, x.scope ?? ""]).sort(),
      [
        ["169.254.1.1", "", "eth0", "link"],
        ["default", "169.254.1.1", "eth0", ""],
      ],
    );
    // The allocation file, host-local's format.
    assert.equal(readFileSync(join(node.dataDir, "sluice", addr), "utf8"), "ctr-a\r\neth0");
  });

  test("pods reach each other, the node and the outside (ping and TCP)", async () => {
    const a = node.podNs("a"); // wired by the test before
    const b = await node.pod("b");
    const rb = await node.add(b, "ctr-b", "b");
    assert.equal(rb.code, 0, rb.stdout);
    const ipA = (await ipJson<Addr[]>(a, "addr", "show", "dev", "eth0"))[0]?.addr_info[0]?.local as string;
    const ipB = podIp(rb);
    assert.ok(await pingFrom(a, ipB), "pod a pings pod b");
    assert.ok(await pingFrom(node.ns, ipA), "the node pings pod a");
    assert.ok(await pingFrom(b, node.nodeIp), "pod b pings the node");
    assert.ok(await pingFrom(node.ext, ipA), "routed traffic from outside the node reaches pod a");
    await startEcho(b, 7070);
    assert.ok(await tcpReach(a, ipB, 7070), "TCP pod a -> pod b");
    assert.ok(await tcpReach(node.ns, ipB, 7070), "TCP node -> pod b");
  });

  test("CHECK passes on a wired pod and reports a missing address or route", async () => {
    const pod = await node.pod("c");
    const add = await node.add(pod, "ctr-c", "c");
    assert.equal(add.code, 0, add.stdout);
    const addr = podIp(add);
    const host = hostIfaceName("ns1", "c");
    const check = () => invokeCni(node.ns, { command: "CHECK", containerId: "ctr-c", netns: pod, ifName: "eth0", args: podArgs("ns1", "c"), conf: node.conf({ prevResult: add.json }) });
    const good = await check();
    assert.equal(good.code, 0, good.stdout);
    assert.equal(good.stdout, "");

    await ip("-n", pod, "route", "del", "default");
    let bad = await check();
    assert.equal(bad.code, 1);
    assert.equal(errOf(bad).code, 104);
    assert.match(errOf(bad).msg, /lacks the default route via 169\.254\.1\.1/);
    await ip("-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0");

    await ip("-n", pod, "addr", "del", `${addr}/32`, "dev", "eth0");
    bad = await check();
    assert.equal(errOf(bad).code, 104);
    assert.match(errOf(bad).msg, new RegExp(`eth0 lacks address ${addr.replace(/\./g, "\\.")}/32`));
    // Removing the last IPv4 address flushed the pod's routes too; put everything back.
    await ip("-n", pod, "addr", "add", `${addr}/32`, "dev", "eth0");
    await ip("-n", pod, "route", "replace", "169.254.1.1", "dev", "eth0", "scope", "link");
    await ip("-n", pod, "route", "replace", "default", "via", "169.254.1.1", "dev", "eth0");

    await ip("-n", node.ns, "route", "del", `${addr}/32`, "dev", host);
    bad = await check();
    assert.equal(errOf(bad).code, 104);
    assert.match(errOf(bad).msg, /node lacks the route/);
    await ip("-n", node.ns, "route", "add", `${addr}/32`, "dev", host, "scope", "link");
    assert.equal((await check()).code, 0);

    // Without prevResult, or for a container we never saw.
    const noPrev = await invokeCni(node.ns, { command: "CHECK", containerId: "ctr-c", netns: pod, ifName: "eth0", args: podArgs("ns1", "c"), conf: node.conf() });
    assert.equal(errOf(noPrev).code, 7);
    const unknown = await invokeCni(node.ns, { command: "CHECK", containerId: "nobody", netns: pod, ifName: "eth0", args: podArgs("ns1", "c"), conf: node.conf({ prevResult: add.json }) });
    assert.equal(errOf(unknown).code, 3);
  });

  test("DEL unwires, is idempotent, and works when the namespace is gone or not passed", async () => {
    const pod = await node.pod("d");
    const add = await node.add(pod, "ctr-d", "d");
    assert.equal(add.code, 0, add.stdout);
    const host = hostIfaceName("ns1", "d");
    assert.ok((await node.links()).includes(host));
    for (let i = 0; i < 2; i++) {
      const del = await node.del(pod, "ctr-d", "d");
      assert.equal(del.code, 0, del.stdout + del.stderr);
      assert.equal(del.stdout, "");
    }
    assert.ok(!(await node.links()).includes(host));
    assert.deepEqual(await node.links(pod), ["lo"]);
    assert.ok(!node.allocations().includes(podIp(add)));

    // The namespace is deleted before DEL (the veth dies with it).
    const gone = await node.pod("e");
    const addE = await node.add(gone, "ctr-e", "e");
    assert.equal(addE.code, 0);
    await run("ip", ["netns", "del", gone]);
    const delE = await node.del(gone, "ctr-e", "e");
    assert.equal(delE.code, 0, delE.stdout);
    assert.ok(!node.allocations().includes(podIp(addE)));

    // No CNI_NETNS at all: the host end is found by name and owner.
    const f = await node.pod("f");
    const addF = await node.add(f, "ctr-f", "f");
    assert.equal(addF.code, 0);
    const delF = await node.del(f, "ctr-f", "f", { netns: "" });
    assert.equal(delF.code, 0, delF.stdout);
    assert.ok(!(await node.links()).includes(hostIfaceName("ns1", "f")));
    assert.deepEqual(await node.links(f), ["lo"]);
    assert.ok(!node.allocations().includes(podIp(addF)));
  });

  test("CNI_NETNS may be a /proc/<pid>/ns/net path (as Docker passes it)", async () => {
    const pod = await node.pod("proc");
    const sleeper = spawn("ip", ["netns", "exec", pod, "sleep", "60"], { stdio: "ignore" });
    try {
      const path = `/proc/${sleeper.pid}/ns/net`;
      const add = await node.add(path, "ctr-proc", "proc");
      assert.equal(add.code, 0, add.stdout);
      assert.equal((add.json?.["interfaces"] as Array<{ sandbox?: string }>)[1]?.sandbox, path);
      assert.ok(await pingFrom(node.ns, podIp(add)));
      const check = await invokeCni(node.ns, { command: "CHECK", containerId: "ctr-proc", netns: path, ifName: "eth0", args: podArgs("ns1", "proc"), conf: node.conf({ prevResult: add.json }) });
      assert.equal(check.code, 0, check.stdout);
      assert.equal((await node.del(path, "ctr-proc", "proc")).code, 0);
      assert.deepEqual(await node.links(pod), ["lo"]);
    } finally {
      sleeper.kill("SIGKILL");
    }
  });

  test("results follow the requested cniVersion; unsupported versions and commands are refused", async () => {
    const shapes: Array<[string, boolean, boolean]> = [
      ["0.3.1", true, false],
      ["0.4.0", true, false],
      ["1.0.0", false, false],
      ["1.1.0", false, true],
    ];
    for (const [i, [v, hasIpVersion, hasMtu]] of shapes.entries()) {
      const pod = await node.pod(`v${i}`);
      const r = await node.add(pod, `ctr-v${i}`, `v${i}`, { conf: node.conf({ cniVersion: v }) });
      assert.equal(r.code, 0, r.stdout);
      assert.equal(r.json?.["cniVersion"], v);
      const ips = r.json?.["ips"] as Array<Record<string, unknown>>;
      assert.equal(ips[0]?.["version"], hasIpVersion ? "4" : undefined, `ips[].version for ${v}`);
      const ifs = r.json?.["interfaces"] as Array<Record<string, unknown>>;
      assert.equal(ifs[1]?.["mtu"], hasMtu ? 1450 : undefined, `interfaces[].mtu for ${v}`);
      if (v !== "0.3.1") {
        const check = await invokeCni(node.ns, { command: "CHECK", containerId: `ctr-v${i}`, netns: pod, ifName: "eth0", args: podArgs("ns1", `v${i}`), conf: node.conf({ cniVersion: v, prevResult: r.json }) });
        assert.equal(check.code, 0, `CHECK ${v}: ${check.stdout}`);
      } else {
        const check = await invokeCni(node.ns, { command: "CHECK", containerId: `ctr-v${i}`, netns: pod, ifName: "eth0", args: podArgs("ns1", `v${i}`), conf: node.conf({ cniVersion: v, prevResult: r.json }) });
        assert.equal(errOf(check).code, 1, "no CHECK before 0.4.0");
      }
      assert.equal((await node.del(pod, `ctr-v${i}`, `v${i}`, { conf: node.conf({ cniVersion: v }) })).code, 0);
    }
    const pod = await node.pod("vx");
    const before0 = await snapshot();
    const old = await node.add(pod, "ctr-vx", "vx", { conf: node.conf({ cniVersion: "0.2.0" }) });
    assert.equal(old.code, 1);
    assert.equal(errOf(old).code, 1);
    assert.match(errOf(old).msg, /incompatible CNI version "0\.2\.0"/);
    assert.deepEqual(await snapshot(), before0);
    for (const cmd of ["STATUS", "GC"]) {
      const r = await invokeCni(node.ns, { command: cmd, conf: node.conf({ cniVersion: "1.0.0", "cni.dev/valid-attachments": [] }) });
      assert.equal(errOf(r).code, 1, `${cmd} needs 1.1.0`);
    }
  });

  test("a chained ADD keeps the previous plugins' result and appends its own", async () => {
    const pod = await node.pod("chain");
    const prevResult = {
      cniVersion: "0.4.0",
      interfaces: [{ name: "tap9", mac: "02:00:00:00:00:09", sandbox: "/var/run/netns/elsewhere" }],
      ips: [{ version: "4", interface: 0, address: "192.0.2.9/24", gateway: "192.0.2.1" }],
      routes: [{ dst: "192.0.2.0/24" }],
      dns: { nameservers: ["192.0.2.53"] },
    };
    const r = await node.add(pod, "ctr-chain", "chain", { conf: node.conf({ cniVersion: "1.0.0", prevResult }) });
    assert.equal(r.code, 0, r.stdout);
    const addr = podIp(r, 1);
    assert.deepEqual(r.json, {
      cniVersion: "1.0.0",
      interfaces: [{ name: "tap9", mac: "02:00:00:00:00:09", sandbox: "/var/run/netns/elsewhere" }, { name: hostIfaceName("ns1", "chain"), mac: "ee:ee:ee:ee:ee:ee" }, { name: "eth0", mac: (r.json?.["interfaces"] as Array<{ mac: string }>)[2]?.mac, sandbox: netnsPath(pod) }],
      ips: [
        { interface: 0, address: "192.0.2.9/24", gateway: "192.0.2.1" },
        { interface: 2, address: `${addr}/32` },
      ],
      routes: [{ dst: "192.0.2.0/24" }, { dst: "0.0.0.0/0", gw: "169.254.1.1" }],
      dns: { nameservers: ["192.0.2.53"] },
    });
    assert.equal((await node.del(pod, "ctr-chain", "chain", { conf: node.conf({ cniVersion: "1.0.0", prevResult: r.json }) })).code, 0);
  });

  test("STATUS: ready with a subnet.env, code 50 without one", async () => {
    const ok = await invokeCni(node.ns, { command: "STATUS", conf: node.conf() });
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(ok.stdout, "");
    renameSync(node.subnetFile, `${node.subnetFile}.away`);
    try {
      const bad = await invokeCni(node.ns, { command: "STATUS", conf: node.conf() });
      assert.equal(bad.code, 1);
      assert.equal(errOf(bad).code, 50);
      assert.ok(errOf(bad).msg.includes(node.subnetFile), errOf(bad).msg);
    } finally {
      renameSync(`${node.subnetFile}.away`, node.subnetFile);
    }
  });

  test("GC releases addresses and host veths of attachments that are not valid", async () => {
    const g1 = await node.pod("g1");
    const g2 = await node.pod("g2");
    const r1 = await node.add(g1, "ctr-g1", "g1");
    const r2 = await node.add(g2, "ctr-g2", "g2");
    assert.equal(r1.code + r2.code, 0);
    // A leftover allocation of a container long gone, and a veth of another Sluice network that must stay.
    writeFileSync(join(node.dataDir, "sluice", "10.244.7.250"), "ctr-old\r\neth0");
    await ip("-n", node.ns, "link", "add", "slcother", "type", "veth", "peer", "name", "slcotherp");
    await ip("-n", node.ns, "link", "set", "slcother", "alias", "sluice/othernet/ctr-x/eth0");
    const valid = [
      { containerID: "ctr-g1", ifname: "eth0" },
      // everything the earlier tests left wired stays valid too
      { containerID: "ctr-a", ifname: "eth0" },
      { containerID: "ctr-b", ifname: "eth0" },
      { containerID: "ctr-c", ifname: "eth0" },
    ];
    const gc = await invokeCni(node.ns, { command: "GC", conf: node.conf({ "cni.dev/valid-attachments": valid }) });
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    const allocs = node.allocations();
    assert.ok(allocs.includes(podIp(r1)), "valid attachment keeps its address");
    assert.ok(!allocs.includes(podIp(r2)), "invalid attachment loses its address");
    assert.ok(!allocs.includes("10.244.7.250"));
    const links = await node.links();
    assert.ok(links.includes(hostIfaceName("ns1", "g1")));
    assert.ok(!links.includes(hostIfaceName("ns1", "g2")));
    assert.ok(links.includes("slcother") && links.includes("ext0"), "links of others are not touched");
    assert.ok(await pingFrom(node.ns, podIp(r1)), "the valid pod still works");
    await ip("-n", node.ns, "link", "del", "slcother");

    const noList = await invokeCni(node.ns, { command: "GC", conf: node.conf() });
    assert.equal(errOf(noList).code, 7, "GC without cni.dev/valid-attachments is refused");
  });

  test("every failed ADD leaves nothing behind", async () => {
    const pod = await node.pod("err");
    const base = await snapshot();
    const expectFail = async (r: CniReply, code: number, msg: RegExp): Promise<void> => {
      assert.equal(r.code, 1, `exit code (${r.stdout})`);
      assert.equal(errOf(r).code, code, r.stdout);
      assert.match(errOf(r).msg, msg);
      assert.deepEqual(await snapshot(), base, "node links and allocations unchanged");
      assert.deepEqual(await node.links(pod), ["lo"], "nothing in the pod");
    };

    // Missing subnet.env: try again later, naming the file.
    const missing = join(node.dir, "nope", "subnet.env");
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: node.conf({ subnetFile: missing }) }), 11, new RegExp(missing.replace(/[/.]/g, "\\$&")));
    // Bad network configs: decode (6) and invalid fields (7), naming the field.
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: "{not json" }), 6, /decoding the network config/);
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: node.conf({ subnetFile: 5 }) }), 7, /^network config: subnetFile: expected string, got number$/);
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: node.conf({ mtu: 20 }) }), 7, /^network config: mtu: must be at least 68$/);
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: node.conf({ type: "bridge" }) }), 7, /^network config: type: must be "sluice" \(or "sluice-cni"\)$/);
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: node.conf({ dataDir: "relative/dir" }) }), 7, /^network config: dataDir: must be an absolute path$/);
    const noName = node.conf();
    delete noName["name"];
    await expectFail(await node.add(pod, "ctr-x", "err", { conf: noName }), 7, /^network config: name: is required/);
    // Bad environment (4).
    await expectFail(await invokeCni(node.ns, { command: "ADD", containerId: "ctr-x", ifName: "eth0", conf: node.conf() }), 4, /CNI_NETNS is required/);
    await expectFail(await node.add(`/var/run/netns/${prefix}-none`, "ctr-x", "err"), 4, /does not exist/);
    await expectFail(await node.add(pod, "ctr-x", "err", { args: "K8S_POD_NAME" }), 4, /CNI_ARGS/);
    await expectFail(await node.add(pod, "bad/id", "err"), 4, /CNI_CONTAINERID/);
    // What ip -batch would misread: '#' starts a comment (cutting the line that moves the pod
    // end into the pod), quotes group, white space splits.
    for (const ifName of ["eth0#x", "e\"th0", "eth'0", "eth\\0"]) {
      await expectFail(await node.add(pod, "ctr-x", "err", { ifName }), 4, /^CNI_IFNAME .* must be 1-15 letters, digits/);
    }
    await expectFail(await node.add(`${netnsPath(pod)}#x`, "ctr-x", "err"), 4, /^CNI_NETNS .* must be an absolute path of letters, digits/);
    await expectFail(await node.add(`${netnsPath(pod)} x`, "ctr-x", "err"), 4, /^CNI_NETNS /);
    await expectFail(await invokeCni(node.ns, { command: "FROB", conf: node.conf() }), 4, /CNI_COMMAND "FROB" is unknown/);

    // The pod already has an eth0: the kernel refuses the pair, nothing was created.
    await ip("-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth9");
    await expectFailPod(await node.add(pod, "ctr-x", "err"), /wiring the host side/);
    await ip("-n", pod, "link", "del", "eth0");

    // The pod already has a default route: the pod side fails midway; the veth and the address go again.
    await ip("-n", pod, "link", "add", "x0", "type", "veth", "peer", "name", "x1");
    await ip("-n", pod, "link", "set", "x0", "up");
    await ip("-n", pod, "route", "add", "default", "dev", "x0");
    await expectFailPod(await node.add(pod, "ctr-x", "err"), /wiring the pod side/);
    await ip("-n", pod, "link", "del", "x0");
    assert.deepEqual(await node.links(pod), ["lo"]);

    async function expectFailPod(r: CniReply, msg: RegExp): Promise<void> {
      assert.equal(errOf(r).code, 102, r.stdout);
      assert.match(errOf(r).msg, msg);
      assert.deepEqual(await snapshot(), base);
      assert.ok(!(await node.links(pod)).includes("eth0") || (await node.links(pod)).includes("eth9"), "no pod end of ours");
    }

    // A repeated ADD of a wired container is refused and leaves the first wiring alone.
    const ok = await node.add(pod, "ctr-y", "err");
    assert.equal(ok.code, 0, ok.stdout);
    const wired = await snapshot();
    const again = await node.add(pod, "ctr-y", "err");
    assert.equal(errOf(again).code, 105);
    assert.deepEqual(await snapshot(), wired);
    assert.ok(await pingFrom(node.ns, podIp(ok)));
    assert.equal((await node.del(pod, "ctr-y", "err")).code, 0);
    assert.deepEqual(await snapshot(), base);
  });

  test("a host veth of the pod's name is replaced only when its alias names the same pod", async () => {
    const pod = await node.pod("vic");
    const host = hostIfaceName("ns1", "vic");
    // A veth that says it is another pod's (two pod names hashing to one host interface name).
    const fake = async (alias: string): Promise<void> => {
      await ip("-n", node.ns, "link", "add", host, "type", "veth", "peer", "name", `${host.slice(0, 12)}p`);
      await ip("-n", node.ns, "link", "set", host, "alias", alias);
    };
    const aliasOf = async (): Promise<string | undefined> => (await ipJson<Addr[]>(node.ns, "link", "show", "dev", host))[0]?.ifalias;

    await fake("sluice/sluice/ctr-someone/eth0/ns2/other");
    const base = await snapshot();
    const refused = await node.add(pod, "ctr-vic", "vic");
    assert.equal(errOf(refused).code, 102, refused.stdout);
    assert.match(errOf(refused).msg, new RegExp(`host interface ${host} belongs to pod ns2/other \\(container ctr-someone\\), not to ns1/vic`));
    assert.deepEqual(await snapshot(), base, "nothing allocated, the other pod's veth left in place");
    assert.equal(await aliasOf(), "sluice/sluice/ctr-someone/eth0/ns2/other");
    await ip("-n", node.ns, "link", "del", host);

    // An alias of an older plugin names no pod: replaced only when the pod's record names that container.
    await fake("sluice/sluice/ctr-older/eth0");
    const noRecord = await node.add(pod, "ctr-vic", "vic");
    assert.equal(errOf(noRecord).code, 102, noRecord.stdout);
    assert.match(errOf(noRecord).msg, /belongs to a container whose pod no record on this node names/);
    assert.equal(await aliasOf(), "sluice/sluice/ctr-older/eth0");
    mkdirSync(join(node.dataDir, "_sluice", "endpoints"), { recursive: true });
    writeFileSync(join(node.dataDir, "_sluice", "endpoints", `${host}.json`), JSON.stringify({ node: "n", namespace: "ns1", pod: "vic", containerId: "ctr-older", ifName: "eth0", hostIface: host, ips: ["10.244.7.240"] }));
    const replaced = await node.add(pod, "ctr-vic", "vic");
    assert.equal(replaced.code, 0, replaced.stdout);
    assert.equal(await aliasOf(), "sluice/sluice/ctr-vic/eth0/ns1/vic");

    // The same pod's earlier container (a new sandbox of ns1/vic): replaced.
    const pod2 = await node.pod("vic2");
    const again = await node.add(pod2, "ctr-vic-2", "vic");
    assert.equal(again.code, 0, again.stdout);
    assert.equal(await aliasOf(), "sluice/sluice/ctr-vic-2/eth0/ns1/vic");
    assert.ok(await pingFrom(node.ns, podIp(again)));
    assert.equal((await node.del(pod2, "ctr-vic-2", "vic")).code, 0);
    assert.equal((await node.del(pod, "ctr-vic", "vic")).code, 0);
    assert.ok(!node.allocations().includes(podIp(replaced)) && !node.allocations().includes(podIp(again)));
  });

  test("an exhausted subnet fails cleanly and recovers after a DEL", async () => {
    const small = join(node.dir, "small.env");
    writeFileSync(small, "FLANNEL_NETWORK=10.245.0.0/16\nFLANNEL_SUBNET=10.245.3.1/29\nFLANNEL_MTU=1400\n");
    const conf = node.conf({ name: "small", subnetFile: small });
    const pods: string[] = [];
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const p = await node.pod(`s${i}`);
      pods.push(p);
      const r = await node.add(p, `ctr-s${i}`, `s${i}`, { conf });
      assert.equal(r.code, 0, r.stdout);
      got.push(podIp(r));
    }
    assert.deepEqual(got.sort(), ["10.245.3.2", "10.245.3.3", "10.245.3.4", "10.245.3.5", "10.245.3.6"]);
    const status = await invokeCni(node.ns, { command: "STATUS", conf });
    assert.equal(errOf(status).code, 50, "STATUS says no address is left");
    const extra = await node.pod("s5");
    const base = await snapshot("small");
    const r = await node.add(extra, "ctr-s5", "s5", { conf });
    assert.equal(errOf(r).code, 101);
    assert.match(errOf(r).msg, /no free address in 10\.245\.3\.0\/29/);
    assert.deepEqual(await snapshot("small"), base);
    assert.deepEqual(await node.links(extra), ["lo"]);

    assert.equal((await node.del(pods[2] as string, "ctr-s2", "s2", { conf })).code, 0);
    const again = await node.add(extra, "ctr-s5", "s5", { conf });
    assert.equal(again.code, 0, again.stdout);
    assert.equal(podIp(again), got.sort()[2], "the released address is reused");
    for (const [i, p] of pods.entries()) await node.del(p, `ctr-s${i}`, `s${i}`, { conf });
    await node.del(extra, "ctr-s5", "s5", { conf });
    assert.deepEqual(node.allocations("small"), []);
  });

  test("dual stack: an IPv6 /128 with a default route via the host veth's link-local address", async () => {
    const dual = join(node.dir, "dual.env");
    mkdirSync(node.dir, { recursive: true });
    writeFileSync(dual, "FLANNEL_NETWORK=10.246.0.0/16\nFLANNEL_SUBNET=10.246.5.1/24\nFLANNEL_IPV6_NETWORK=fd10:246::/56\nFLANNEL_IPV6_SUBNET=fd10:246:0:5::1/64\nFLANNEL_MTU=1450\n");
    const conf = node.conf({ name: "dual", subnetFile: dual });
    await ip("-n", node.ns, "addr", "add", "fd99::1/128", "dev", "lo");
    const p1 = await node.pod("d6a");
    const p2 = await node.pod("d6b");
    const r1 = await node.add(p1, "ctr-d6a", "d6a", { conf });
    const r2 = await node.add(p2, "ctr-d6b", "d6b", { conf });
    assert.equal(r1.code + r2.code, 0, r1.stdout + r2.stdout);
    const ips = (r1.json?.["ips"] as Array<{ address: string }>).map((x) => x.address);
    assert.equal(ips.length, 2);
    assert.match(ips[1] as string, /^fd10:246:0:5::[0-9a-f]+\/128$/);
    assert.deepEqual(r1.json?.["routes"], [
      { dst: "0.0.0.0/0", gw: "169.254.1.1" },
      { dst: "::/0", gw: "fe80::ecee:eeff:feee:eeee" },
    ]);
    const v6a = (ips[1] as string).split("/")[0] as string;
    const v6b = podIp(r2, 1);
    assert.ok(await pingFrom(p1, v6b), "pod to pod over IPv6");
    assert.ok(await pingFrom(node.ns, v6a), "node to pod over IPv6");
    assert.ok(await pingFrom(p2, "fd99::1"), "pod to node over IPv6");
    const check = await invokeCni(node.ns, { command: "CHECK", containerId: "ctr-d6a", netns: p1, ifName: "eth0", args: podArgs("ns1", "d6a"), conf: { ...conf, prevResult: r1.json } });
    assert.equal(check.code, 0, check.stdout);
    assert.equal((await node.del(p1, "ctr-d6a", "d6a", { conf })).code, 0);
    assert.equal((await node.del(p2, "ctr-d6b", "d6b", { conf })).code, 0);
    assert.deepEqual(node.allocations("dual"), []);
  });
});
