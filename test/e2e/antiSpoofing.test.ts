/**
 * No forged packet rides an existing flow (issue 11, item 1). A pod (x/a, with the raw
 * sockets any root in a container with CAP_NET_RAW has) sends hand-made packets that carry
 * its neighbour's address (x/b, same node) or the address of x/b's peer (x/t, the other
 * node): on the tuple of x/b's live UDP flow to x/t in both directions, as an ICMP error
 * RELATED to that flow, and on tuples with no conntrack entry; IPv4 and IPv6. None may
 * arrive (counted at the receivers' sockets), and x/b's own flow keeps working.
 *
 * Without the raw-table source check (and with the filter chain accepting ESTABLISHED
 * before its source check) the flow's tuples went through: the original direction to
 * x/t, the reply direction and the ICMP error straight into x/b, past its ingress chain.
 *
 * They are dropped before conntrack sees them (raw PREROUTING): node-1's conntrack entry of
 * the flow counts x/b's datagrams and x/t's answers, and not one forgery.
 *
 * The test does not wait a fixed time for packets that must not come: after the forgeries
 * x/a sends genuine packets (its own address) down the same paths, crafted the same way,
 * and the counts are read once those have arrived.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { nsExec, nsTry } from "../../src/sandbox/netns.js";
import { type SandboxPod, createNamespace, createPod, getPod } from "../../src/sandbox/pods.js";
import { HOST_VETH_MAC } from "../../src/cni/wiring.js";
import { testCluster } from "../helpers/cluster.js";
import { type Counts, type RawPacketsProcess, type RawPacket, countOf, sendRaw, startFlow, startListener } from "../helpers/rawPackets.js";

const FAMILIES = [4, 6] as const;
type Fam = (typeof FAMILIES)[number];
/** x/t: the flow's port and a port no flow uses. x/b: the flow's source port and a port no flow uses. */
const T_FLOW = 7101;
const T_IDLE = 7102;
const B_FLOW = 7201;
const B_IDLE = 7202;
const ROUNDS = 20;

const addr = (p: SandboxPod, f: Fam): string => {
  const a = p.ips.find((x) => x.includes(":") === (f === 6));
  assert.ok(a, `${p.namespace}/${p.name} has an IPv${f} address (dual stack): ${p.ips.join(", ")}`);
  return a;
};

const show = (what: string, c: Counts): string => `${what}: ${JSON.stringify(c)}`;

describe("anti-spoofing: a pod cannot send with another pod's address, on a live flow or not (IPv4 and IPv6)", () => {
  const sb = testCluster("spf", { backend: "vxlan", nodes: 2, segments: 1, ipv6: true });
  let a: SandboxPod;
  let b: SandboxPod;
  let t: SandboxPod;
  let listener: RawPacketsProcess | undefined;
  let flow: RawPacketsProcess | undefined;

  before(async () => {
    await createNamespace(sb, "x");
    [a, b, t] = await Promise.all([
      createPod(sb, { namespace: "x", name: "a", node: 1, labels: { pod: "a" } }),
      createPod(sb, { namespace: "x", name: "b", node: 1, labels: { pod: "b" } }),
      createPod(sb, { namespace: "x", name: "t", node: 2, labels: { pod: "t" } }),
    ]);
    // Per-entry packet counters on node-1 (for entries made from now on): they show whether
    // conntrack itself ever saw a forgery, not just whether it was delivered.
    await nsExec((sb.nodes[0] as SandboxNode).ns, "sysctl", ["-qw", "net.netfilter.nf_conntrack_acct=1"]);
    listener = await startListener(t.netns, [T_FLOW, T_IDLE]);
    flow = await startFlow(b.netns, B_FLOW, { 4: addr(t, 4), 6: addr(t, 6) }, T_FLOW, [B_IDLE]);
  });
  after(() => {
    flow?.stop();
    listener?.stop();
  });

  test("forgeries on x/b's live flow (both directions, an ICMP error) and on idle tuples never arrive; x/b's flow is unaffected", async (tc) => {
    const l = listener as RawPacketsProcess;
    const f = flow as RawPacketsProcess;
    const [n1] = sb.nodes as [SandboxNode, SandboxNode];
    const echoes = async (): Promise<Record<Fam, number>> => {
      const c = await f.report();
      return { 4: countOf(c, 4, B_FLOW, "flow"), 6: countOf(c, 6, B_FLOW, "flow") };
    };
    assert.ok(await eventually(async () => Object.values(await echoes()).every((n) => n > 0), 20_000, 200), `x/b's flow to x/t is answered in both families: ${show("x/b", await f.report())}`);
    /** node-1's conntrack entry of x/b's flow: packets seen in the original and the reply direction. */
    const entry = async (fam: Fam): Promise<{ orig: number; reply: number }> => {
      const ct = await nsTry(n1.ns, "conntrack", ["-L", "-f", fam === 4 ? "ipv4" : "ipv6", "-p", "udp", "-s", addr(b, fam), "-d", addr(t, fam), "--sport", String(B_FLOW), "--dport", String(T_FLOW)]);
      const m = /packets=(\d+) .*packets=(\d+) /.exec(ct.stdout);
      assert.ok(m, `IPv${fam}: node-1 has a conntrack entry (with counters) for x/b:${B_FLOW} -> x/t:${T_FLOW}: ${ct.stdout}${ct.stderr}`);
      return { orig: Number(m[1]), reply: Number(m[2]) };
    };
    // The premise: node-1 (where x/a sends) holds a conntrack entry for the flow's tuple.
    for (const fam of FAMILIES) await entry(fam);

    const genuine = (round: string): RawPacket[] =>
      FAMILIES.flatMap((fam) => [
        { kind: "udp", family: fam, src: addr(a, fam), dst: addr(t, fam), sport: 7301, dport: T_IDLE, payload: `${round} from-a` },
        { kind: "udp", family: fam, src: addr(a, fam), dst: addr(b, fam), sport: 7301, dport: B_IDLE, payload: `${round} from-a` },
      ]);
    const forged: RawPacket[] = FAMILIES.flatMap((fam): RawPacket[] => [
      // x/b's flow, original direction (x/b -> x/t) and reply direction (x/t -> x/b)
      { kind: "udp", family: fam, src: addr(b, fam), dst: addr(t, fam), sport: B_FLOW, dport: T_FLOW, payload: "spoof as-b" },
      { kind: "udp", family: fam, src: addr(t, fam), dst: addr(b, fam), sport: T_FLOW, dport: B_FLOW, payload: "spoof as-t" },
      // an ICMP port unreachable "from x/t" about x/b's datagrams: RELATED to the flow
      { kind: "port-unreachable", family: fam, src: addr(t, fam), dst: addr(b, fam), sport: T_FLOW, dport: B_FLOW },
      // tuples without a conntrack entry
      { kind: "udp", family: fam, src: addr(b, fam), dst: addr(t, fam), sport: B_IDLE, dport: T_IDLE, payload: "spoof as-b" },
      { kind: "udp", family: fam, src: addr(t, fam), dst: addr(b, fam), sport: T_IDLE, dport: B_IDLE, payload: "spoof as-t" },
    ]);
    const out = { iface: "eth0", mac: HOST_VETH_MAC };
    const arrived = async (tag: string): Promise<boolean> => {
      const [ct, cb] = [await l.report(), await f.report()];
      return FAMILIES.every((fam) => countOf(ct, fam, T_IDLE, tag) > 0 && countOf(cb, fam, B_IDLE, tag) > 0);
    };

    // The sender works: x/a's own address, crafted and sent the same way, gets through.
    await sendRaw(a.netns, genuine("before"), { ...out, count: 3, intervalMs: 10 });
    assert.ok(await eventually(() => arrived("before"), 10_000, 100), `x/a's genuine raw packets arrive: ${show("x/t", await l.report())}; ${show("x/b", await f.report())}`);

    const before = await echoes();
    const sent = await sendRaw(a.netns, forged, { ...out, count: ROUNDS, intervalMs: 10 });
    assert.equal(sent, forged.length * ROUNDS);
    // Genuine packets behind the forgeries on the same paths: once they are in, so would the forgeries be.
    await sendRaw(a.netns, genuine("after"), { ...out, count: 3, intervalMs: 10 });
    assert.ok(await eventually(() => arrived("after"), 10_000, 100), `x/a's genuine raw packets after the forgeries arrive: ${show("x/t", await l.report())}; ${show("x/b", await f.report())}`);
    // x/b's flow goes on: more echoes come back in both families after the forgeries.
    const grew = await eventually(async () => {
      const now = await echoes();
      return FAMILIES.every((fam) => now[fam] > before[fam]);
    }, 10_000, 100);

    const [ct, cb] = [await l.report(), await f.report()];
    tc.diagnostic(show("x/t", ct));
    tc.diagnostic(show("x/b", cb));
    const leaks: string[] = [];
    for (const fam of FAMILIES) {
      for (const port of [T_FLOW, T_IDLE]) if (countOf(ct, fam, port, "spoof")) leaks.push(`IPv${fam} x/t:${port} received ${countOf(ct, fam, port, "spoof")} forged datagrams`);
      for (const port of [B_FLOW, B_IDLE]) if (countOf(cb, fam, port, "spoof")) leaks.push(`IPv${fam} x/b:${port} received ${countOf(cb, fam, port, "spoof")} forged datagrams`);
      if (countOf(cb, fam, B_FLOW, "icmp-error")) leaks.push(`IPv${fam} x/b's flow socket got ${countOf(cb, fam, B_FLOW, "icmp-error")} errors (the forged ICMP port unreachable)`);
    }
    assert.deepEqual(leaks, [], `no forged packet arrives (${ROUNDS} of each sent)`);
    assert.ok(grew, `x/b's own flow is still answered in both families after the forgeries: before ${JSON.stringify(before)}, now ${JSON.stringify(await echoes())}`);
    for (const fam of FAMILIES) assert.ok(countOf(ct, fam, T_FLOW, "flow") > 0, `IPv${fam}: x/t keeps receiving x/b's flow`);

    // Dropped before conntrack, not only before delivery: once x/b stops sending and its last
    // echoes are in, node-1's entry has counted x/b's datagrams and x/t's answers, and nothing else.
    await f.report("pause");
    const settled = async (): Promise<boolean> => {
      const c = await f.report();
      return FAMILIES.every((fam) => countOf(c, fam, B_FLOW, "flow") === countOf(c, fam, B_FLOW, "sent"));
    };
    assert.ok(await eventually(settled, 10_000, 100), `every datagram of x/b's flow was answered: ${show("x/b", await f.report())}`);
    const final = await f.report();
    for (const fam of FAMILIES) {
      const want = { orig: countOf(final, fam, B_FLOW, "sent"), reply: countOf(final, fam, B_FLOW, "flow") };
      assert.deepEqual(await entry(fam), want, `IPv${fam}: node-1's conntrack entry of x/b's flow counted exactly x/b's datagrams and their answers (a forgery that reached conntrack adds ${ROUNDS} in its direction)`);
    }
  });

  test("the host side of every pod veth has strict rp_filter (IPv4)", async () => {
    const [n1] = sb.nodes as [SandboxNode, SandboxNode];
    for (const p of [getPod(sb, "x/a"), getPod(sb, "x/b")]) {
      const r = await nsTry(n1.ns, "cat", [`/proc/sys/net/ipv4/conf/${p.hostIface}/rp_filter`]);
      assert.equal(r.stdout.trim(), "1", `${p.namespace}/${p.name} (${p.hostIface})`);
    }
  });
});
