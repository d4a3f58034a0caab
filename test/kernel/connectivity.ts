/**
 * The connectivity suite every backend runs: a cluster of real agents in network
 * namespaces; the kernel state each node should have, derived from the peers' real
 * devices; real traffic with FORWARD policy DROP; drift repair; peer departure.
 */
import { describe, test, before } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readSubnetEnv } from "../../src/agent/subnetEnv.js";
import { cidrHost, formatCidr, formatIp, parseCidr } from "../../src/model/ip.js";
import { type Sandbox, type SandboxBackend, type SandboxNode, underlayAddress } from "../../src/sandbox/cluster.js";
import { type Endpoint, addEndpoint, eventually, ping, startEchoServer, tcpProbe } from "../../src/sandbox/endpoints.js";
import { addNetns, delNetns, ip, nsExec, nsTry } from "../../src/sandbox/netns.js";
import { binPath } from "../../src/sandbox/paths.js";
import { type JsonRoute, nsJson, testCluster } from "../helpers/cluster.js";

interface NodeFacts {
  node: SandboxNode;
  subnet: string;
  tunnelIp: string;
  mac: string | undefined;
}

async function facts(n: SandboxNode): Promise<NodeFacts> {
  const env = await readSubnetEnv(join(n.stateDir, "subnet.env"));
  assert.ok(env?.subnet, `${n.name} wrote subnet.env`);
  const links = await nsJson<Array<{ ifname: string; address: string }>>(n.ns, "ip", ["link", "show"]);
  return { node: n, subnet: formatCidr(env.subnet), tunnelIp: formatIp({ family: 4, value: env.subnet.ip }), mac: links.find((l) => l.ifname === "sluice.1")?.address };
}

/** What node `n` must have for peer `p`, by the backend's rules and the peer's real VTEP. */
function expectedFor(backend: SandboxBackend, n: NodeFacts, p: NodeFacts): { route: string; neigh?: string; fdb?: string } {
  const direct = backend === "host-gw" || (backend === "vxlan-direct" && n.node.segment === p.node.segment);
  if (direct) return { route: `${p.subnet} via ${p.node.address} dev eth0` };
  return { route: `${p.subnet} via ${p.tunnelIp} dev sluice.1 onlink`, neigh: `${p.tunnelIp} ${p.mac}`, fdb: `${p.mac} ${p.node.address}` };
}

async function kernelState(n: SandboxNode): Promise<{ routes: string[]; neigh: string[]; fdb: string[] }> {
  const routes = (await nsJson<JsonRoute[]>(n.ns, "ip", ["route", "show", "proto", "77"])).map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${r.flags.includes("onlink") ? " onlink" : ""}`);
  const hasVxlan = (await nsJson<Array<{ ifname: string }>>(n.ns, "ip", ["link", "show"])).some((l) => l.ifname === "sluice.1");
  const neigh = hasVxlan ? (await nsJson<Array<{ dst: string; lladdr: string; state: string[] }>>(n.ns, "ip", ["neigh", "show", "dev", "sluice.1", "nud", "permanent"])).map((x) => `${x.dst} ${x.lladdr}`) : [];
  const fdb = hasVxlan ? (await nsJson<Array<{ mac: string; dst?: string }>>(n.ns, "bridge", ["fdb", "show", "dev", "sluice.1"])).filter((x) => x.dst).map((x) => `${x.mac} ${x.dst}`) : [];
  return { routes: routes.sort(), neigh: neigh.sort(), fdb: fdb.sort() };
}

async function expectedState(backend: SandboxBackend, sb: Sandbox, n: SandboxNode): Promise<{ routes: string[]; neigh: string[]; fdb: string[] }> {
  const all = await Promise.all(sb.nodes.map(facts));
  const me = all.find((f) => f.node === n) as NodeFacts;
  const exp = all.filter((f) => f.node !== n).map((p) => expectedFor(backend, me, p));
  return {
    routes: exp.map((e) => e.route).sort(),
    neigh: exp.flatMap((e) => (e.neigh ? [e.neigh] : [])).sort(),
    fdb: exp.flatMap((e) => (e.fdb ? [e.fdb] : [])).sort(),
  };
}

async function converged(backend: SandboxBackend, sb: Sandbox, n: SandboxNode): Promise<boolean> {
  const [have, want] = await Promise.all([kernelState(n), expectedState(backend, sb, n)]);
  return JSON.stringify(have) === JSON.stringify(want);
}

export function connectivitySuite(tag: string, backend: SandboxBackend, segments: 1 | 2): void {
  describe(`${backend} connectivity (${segments} L2 segment${segments > 1 ? "s" : ""})`, () => {
    const sb: Sandbox = testCluster(tag, { backend, nodes: 3, segments });
    const eps: Endpoint[] = [];
    before(async () => {
      for (const n of sb.nodes) {
        const ep = await addEndpoint(sb, n, "a", 2);
        startEchoServer(ep, 8080, n.stateDir);
        eps.push(ep);
      }
    });

    test("every node has exactly the routes, neighbours and FDB entries its peers call for", async () => {
      for (const n of sb.nodes) {
        const ok = await eventually(() => converged(backend, sb, n), 15_000);
        assert.deepEqual(await kernelState(n), await expectedState(backend, sb, n), `${n.name} converged: ${ok}`);
      }
      if (backend === "vxlan-direct") {
        const routes = (await kernelState(sb.nodes[0] as SandboxNode)).routes;
        assert.ok(routes.some((r) => r.includes("dev eth0")) && routes.some((r) => r.includes("dev sluice.1")), "DirectRouting chose per peer: both kinds present");
      }
    });

    test("pods on different nodes reach each other (ping and TCP) with FORWARD policy DROP", async () => {
      for (const n of sb.nodes) assert.match(await nsExec(n.ns, "iptables", ["-S", "FORWARD"]), /^-P FORWARD DROP/);
      for (const from of eps) {
        for (const to of eps) {
          if (from === to) continue;
          assert.ok(await eventually(() => ping(from, to.ip), 10_000), `ping ${from.node.name} -> ${to.node.name}`);
          assert.ok(await eventually(() => tcpProbe(from, to.ip, 8080), 10_000), `tcp ${from.node.name} -> ${to.node.name}`);
        }
      }
    });

    test("a rogue host on the underlay (no peer) reaches no pod: its VXLAN and its cluster-sourced packets are dropped; peers still work", async () => {
      const [target, other] = eps as [Endpoint, Endpoint];
      const n1 = target.node;
      const home = await facts(n1);
      const peer = await facts(other.node);
      const rogue = `${sb.o.prefix}-rogue`;
      // Echo requests that reach the target pod, by source address (counted in the pod's own INPUT).
      const arrivals = async (src: string): Promise<number> => {
        const line = (await nsExec(target.ns, "iptables-save", ["-c", "-t", "filter"])).split("\n").find((l) => l.includes(`-A INPUT -s ${src}/32 `));
        return Number(/^\[(\d+):/.exec(line ?? "")?.[1] ?? -1);
      };
      const sources = {
        unallocated: "10.244.250.7", // inside the cluster network, no node's subnet
        ownSubnet: formatIp(cidrHost(parseCidr(home.subnet), 200n)), // claims to be a pod of the target's own node
        peerPodOverVxlan: formatIp(cidrHost(parseCidr(peer.subnet), 77n)), // a real peer's pod, tunnelled from the rogue
      };
      await addNetns(rogue);
      try {
        await ip("link", "add", "eth0", "netns", rogue, "type", "veth", "peer", "name", "rogue0", "netns", sb.underlayNs);
        await ip("-n", sb.underlayNs, "link", "set", "rogue0", "master", `br${n1.segment}`, "up");
        const rogueAddr = underlayAddress(n1.segment, 250);
        await ip("-n", rogue, "addr", "add", `${rogueAddr}/24`, "dev", "eth0");
        await ip("-n", rogue, "link", "set", "eth0", "up");
        await ip("-n", rogue, "link", "set", "lo", "up");
        for (const src of Object.values(sources)) await nsExec(target.ns, "iptables", ["-A", "INPUT", "-s", `${src}/32`, "-p", "icmp", "-j", "ACCEPT"]);
        // Three echo requests; no answer can come back, only the pod's counters tell.
        const send = async (src: string): Promise<void> => void (await nsTry(rogue, "ping", ["-c", "3", "-i", "0.2", "-W", "1", "-I", src, target.ip]));

        // Plain packets with cluster sources, routed at the node as host-gw peers do.
        for (const src of [sources.unallocated, sources.ownSubnet]) await ip("-n", rogue, "addr", "add", `${src}/32`, "dev", "lo");
        await ip("-n", rogue, "route", "add", home.subnet, "via", n1.address);
        await send(sources.unallocated);
        await send(sources.ownSubnet);
        assert.equal(await arrivals(sources.unallocated), 0, "an unallocated cluster source from the underlay is dropped");
        assert.equal(await arrivals(sources.ownSubnet), 0, "a source of the node's own subnet from the underlay is dropped");

        if (backend !== "host-gw") {
          // VXLAN to the node's VTEP from an underlay address that is no peer's, carrying a real peer pod's address.
          await ip("-n", rogue, "route", "del", home.subnet);
          await ip("-n", rogue, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "8472", "local", rogueAddr, "dev", "eth0", "nolearning");
          await ip("-n", rogue, "addr", "add", `${sources.peerPodOverVxlan}/32`, "dev", "vx0");
          await ip("-n", rogue, "link", "set", "vx0", "up");
          await ip("-n", rogue, "neigh", "add", home.tunnelIp, "lladdr", String(home.mac), "dev", "vx0", "nud", "permanent");
          await nsExec(rogue, "bridge", ["fdb", "append", String(home.mac), "dev", "vx0", "dst", n1.address]);
          await ip("-n", rogue, "route", "add", home.subnet, "via", home.tunnelIp, "dev", "vx0", "onlink", "src", sources.peerPodOverVxlan);
          await send(sources.peerPodOverVxlan);
          assert.equal(await arrivals(sources.peerPodOverVxlan), 0, "VXLAN from an underlay address that is no peer's is dropped");
          assert.match(await nsExec(n1.ns, "iptables-save", ["-c", "-t", "filter"]), /^\[[1-9]\d*:\d+\] -A SLUICE-INPUT -p udp -m udp --dport 8472 -m set ! --match-set slc4-peer-hosts src/m, "dropped by the VXLAN rule");
        }
      } finally {
        await delNetns(rogue);
      }
      // The real peers' traffic is untouched.
      assert.ok(await eventually(() => ping(other, target.ip), 10_000), "peer pod -> pod still pings");
      assert.ok(await eventually(() => tcpProbe(other, target.ip, 8080), 10_000), "and connects");
    });

    test("a packet of the full pod MTU crosses nodes without fragmentation", async () => {
      const env = await readSubnetEnv(join((sb.nodes[0] as SandboxNode).stateDir, "subnet.env"));
      const mtu = env?.mtu ?? 0;
      assert.equal(mtu, backend === "host-gw" ? 1500 : 1450);
      const [a, b] = eps as [Endpoint, Endpoint];
      assert.ok(await ping(a, b.ip, { size: mtu - 28, dontFragment: true }), `ping -M do -s ${mtu - 28}`);
      assert.equal(await ping(a, b.ip, { size: mtu - 27, dontFragment: true }), false, "one byte more does not fit");
    });

    test("hand-deleted routes, neighbours, FDB entries and iptables rules come back", async () => {
      const n = sb.nodes[0] as SandboxNode;
      const peer = await facts(sb.nodes[1] as SandboxNode);
      await nsExec(n.ns, "ip", ["route", "del", peer.subnet]);
      if (backend !== "host-gw") {
        await nsExec(n.ns, "ip", ["link", "set", "sluice.1", "down"]).catch(() => undefined);
        await nsExec(n.ns, "ip", ["neigh", "flush", "dev", "sluice.1"]).catch(() => undefined);
        await nsExec(n.ns, "bridge", ["fdb", "del", String(peer.mac), "dev", "sluice.1", "dst", peer.node.address]).catch(() => undefined);
        await nsExec(n.ns, "ip", ["link", "set", "sluice.1", "up"]).catch(() => undefined);
      }
      await nsExec(n.ns, "iptables", ["-D", "SLUICE-FORWARD", "1"]);
      await nsExec(n.ns, "iptables", ["-t", "nat", "-F", "SLUICE-POSTROUTING"]);
      assert.ok(await eventually(() => converged(backend, sb, n), 15_000), "routing repaired");
      assert.ok(
        await eventually(async () => {
          const f = await nsExec(n.ns, "iptables", ["-S", "SLUICE-FORWARD"]);
          const p = await nsExec(n.ns, "iptables", ["-t", "nat", "-S", "SLUICE-POSTROUTING"]);
          // SLUICE-FORWARD: the underlay trust rules (with VXLAN: no pod sends it; then the underlay interface, and
          // the VXLAN device if any), the policy engine's mark reset and two dispatch jumps, then the two accept rules
          const underlayRules = backend === "host-gw" ? 1 : 3;
          return f.split("\n").filter((l) => l.startsWith("-A")).length === 5 + underlayRules && p.split("\n").filter((l) => l.startsWith("-A")).length === 6;
        }, 10_000),
        "iptables repaired",
      );
      const [a, b] = eps as [Endpoint, Endpoint];
      assert.ok(await eventually(() => tcpProbe(a, b.ip, 8080), 10_000));
    });

    test("an agent restart keeps the dataplane: traffic flows while it is down; subnet and VTEP MAC survive", async () => {
      const n = sb.nodes[1] as SandboxNode;
      const before = await facts(n);
      await sb.stopAgent(n);
      const [a, b] = eps as [Endpoint, Endpoint];
      assert.ok(await tcpProbe(a, b.ip, 8080), "traffic into the stopped node still flows");
      assert.ok(await tcpProbe(b, a.ip, 8080), "traffic out of the stopped node still flows");
      assert.match(await nsExec(n.ns, "iptables", ["-S", "FORWARD"]), /-j SLUICE-FORWARD/, "rules were left in place on SIGTERM");
      await sb.startAgent(n);
      await sb.waitReady(n);
      const after = await facts(n);
      assert.equal(after.subnet, before.subnet);
      assert.equal(after.mac, before.mac);
      assert.ok(await eventually(() => converged(backend, sb, n), 15_000));
    });

    test("a peer that leaves is unrouted everywhere", async () => {
      const gone = sb.nodes[2] as SandboxNode;
      const goneFacts = await facts(gone);
      await sb.removeNode(gone);
      const c = sb.etcdClient();
      try {
        await c.delete().key(`/coreos.com/network/subnets/${goneFacts.subnet.replace("/", "-")}`);
      } finally {
        c.close();
      }
      for (const n of sb.nodes) {
        assert.ok(await eventually(() => converged(backend, sb, n), 15_000), `${n.name} dropped ${gone.name}`);
        const st = await kernelState(n);
        assert.ok(!st.routes.some((r) => r.startsWith(goneFacts.subnet)));
        if (goneFacts.mac) assert.ok(!st.fdb.some((f) => f.startsWith(goneFacts.mac as string)));
      }
    });

    test("sluicectl cleanup removes everything the agent programmed, and only that", async () => {
      const n = sb.nodes[0] as SandboxNode;
      await sb.stopAgent(n);
      await nsExec(n.ns, "iptables", ["-N", "FOREIGN"]);
      // Sets as the policy engine makes them (one referenced by a rule of ours), and one of someone else's.
      await nsExec(n.ns, "ipset", ["restore"], "create slc4-cleanup hash:ip family inet\nadd slc4-cleanup 10.9.9.9\ncreate slc6-cleanup hash:net family inet6\ncreate foreign-set hash:ip family inet\n");
      await nsExec(n.ns, "iptables", ["-I", "SLUICE-FORWARD", "-m", "set", "--match-set", "slc4-cleanup", "src", "-j", "RETURN"]);
      // What an nftables-dataplane run leaves (our tables), beside someone else's table.
      await nsExec(n.ns, "nft", ["-f", "-"], "add table ip sluice\nadd set ip sluice slc4-x { type ipv4_addr; }\nadd chain ip sluice filter-forward { type filter hook forward priority 0; policy accept; }\nadd table ip6 sluice\nadd table ip foreign\n");
      const out = await nsExec(n.ns, process.execPath, [binPath("sluicectl"), "cleanup"]);
      assert.match(out, /nftables: removed table ip sluice/);
      assert.match(out, /nftables: removed table ip6 sluice/);
      const tables = await nsExec(n.ns, "nft", ["list", "tables"]);
      assert.doesNotMatch(tables, /sluice/);
      assert.match(tables, /table ip foreign/, "another's nftables table stays");
      assert.match(out, /SLUICE-FORWARD/);
      assert.match(out, /ipsets \(IPv4\): removed slc4-cleanup/);
      assert.deepEqual((await nsExec(n.ns, "ipset", ["list", "-n"])).split("\n").filter(Boolean), ["foreign-set"], "our ipsets are gone, another's stays");
      const rules = await nsExec(n.ns, "iptables-save", []);
      assert.doesNotMatch(rules, /SLUICE-|sluice:/);
      assert.match(rules, /:FOREIGN/);
      assert.deepEqual((await kernelState(n)).routes, []);
      const links = await nsJson<Array<{ ifname: string }>>(n.ns, "ip", ["link", "show"]);
      assert.ok(!links.some((l) => l.ifname.startsWith("sluice")));
      assert.ok(links.some((l) => l.ifname === "eth0"), "the underlay is untouched");
    });
  });
}

