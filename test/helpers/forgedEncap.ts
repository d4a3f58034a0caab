/**
 * A pod cannot wrap a packet in its cluster's tunnel encapsulation itself and have a peer
 * node unwrap it. x/a (a hostile tenant's pod: CAP_NET_RAW is not even needed for VXLAN, a
 * UDP socket does) sends node-2 a tunnel packet from its own address holding a datagram
 * "from x/b" to x/t. Leaving node-1 it is masqueraded to node-1's address, a trusted
 * peer's, so node-2 would unwrap it and deliver it as x/b's: past x/t's policy, which admits
 * x/b only. Every node therefore drops forwarded tunnel packets (UDP to the VXLAN port, IP
 * protocol 4) from inside the cluster network (Felix drops workloads' VXLAN and IPIP too).
 *
 * The scenario sends genuine datagrams from x/b behind the forgeries and reads the counts
 * once those have arrived, so it waits for no fixed time. The backend's forgery is the
 * caller's (test/e2e/workloadEncap.test.ts: VXLAN; the VM's ipip guest test: IPIP).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { NetworkPolicyObject } from "../../src/config/k8sSchemas.js";
import { EtcdResourceStore } from "../../src/datastore/etcdResources.js";
import { HOST_VETH_MAC } from "../../src/cni/wiring.js";
import type { Sandbox, SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { type SandboxPod, createNamespace, createPod } from "../../src/sandbox/pods.js";
import { type RawPacket, type RawPacketsProcess, countOf, sendRaw, startListener } from "./rawPackets.js";

const PORT = 7401;
const ROUNDS = 20;

export interface ForgeryTarget {
  /** Node 2, x/t's. */
  node: SandboxNode;
  /** x/a's address (the forger's), x/b's (the one forged) and x/t's. */
  a: string;
  b: string;
  t: string;
  /** The inner datagram's ports and its payload (tagged "spoof"). */
  innerSport: number;
  innerDport: number;
  payload: string;
}

/** The scenario on `sb` (two nodes; x/a and x/b on node 1, x/t on node 2), with `forge` making the backend's tunnel packets. */
export function forgedEncapTests(sb: Sandbox, encapsulation: string, forge: (t: ForgeryTarget) => Promise<RawPacket[]>, o: { withinMs?: number } = {}): void {
  const within = o.withinMs ?? 20_000;
  describe(`no pod sends ${encapsulation}: a hand-made ${encapsulation} packet to a peer node never delivers another pod's address`, () => {
    let a: SandboxPod;
    let b: SandboxPod;
    let t: SandboxPod;
    let listener: RawPacketsProcess | undefined;

    before(async () => {
      await createNamespace(sb, "x");
      [a, b, t] = await Promise.all([
        createPod(sb, { namespace: "x", name: "a", node: 1, labels: { pod: "a" } }),
        createPod(sb, { namespace: "x", name: "b", node: 1, labels: { pod: "b" } }),
        createPod(sb, { namespace: "x", name: "t", node: 2, labels: { pod: "t" } }),
      ]);
      const etcd = sb.etcdClient();
      try {
        const policy: NetworkPolicyObject = { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: "x", name: "t-from-b" }, spec: { podSelector: { matchLabels: { pod: "t" } }, policyTypes: ["Ingress"], ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] } };
        await new EtcdResourceStore(etcd).applyAll([policy]);
      } finally {
        etcd.close();
      }
      listener = await startListener(t.netns, [PORT]);
    });
    after(() => listener?.stop());

    test(`x/t's policy admits x/b and not x/a; x/a's ${encapsulation} packets carrying x/b's address never arrive`, async (tc) => {
      const l = listener as RawPacketsProcess;
      const [, n2] = sb.nodes as [SandboxNode, SandboxNode];
      const [ipA, ipB, ipT] = [a, b, t].map((p) => p.ips[0] as string) as [string, string, string];
      const out = { iface: "eth0", mac: HOST_VETH_MAC };
      const fromB = (tag: string): RawPacket[] => [{ kind: "udp", family: 4, src: ipB, dst: ipT, sport: 7402, dport: PORT, payload: `${tag} from-b` }];
      const arrived = async (tag: string): Promise<boolean> => countOf(await l.report(), 4, PORT, tag) > 0;

      // The policy is in force: x/b gets through, x/a (its own address) does not.
      assert.ok(await eventually(async () => {
        await sendRaw(b.netns, fromB("before"), { ...out, count: 1, intervalMs: 10 });
        return arrived("before");
      }, within, 200), "x/b reaches x/t");
      await sendRaw(a.netns, [{ kind: "udp", family: 4, src: ipA, dst: ipT, sport: 7403, dport: PORT, payload: "denied from-a" }], { ...out, count: 3, intervalMs: 10 });

      const forged = await forge({ node: n2, a: ipA, b: ipB, t: ipT, innerSport: 7402, innerDport: PORT, payload: "spoof as-b" });
      await sendRaw(a.netns, forged, { ...out, count: ROUNDS, intervalMs: 10 });
      // Genuine datagrams behind the forgeries, down x/t's path: once they are in, so would the forgeries be.
      await sendRaw(b.netns, fromB("after"), { ...out, count: 3, intervalMs: 10 });
      assert.ok(await eventually(() => arrived("after"), within, 100), "x/b's datagrams after the forgeries arrive");
      const counts = await l.report();
      tc.diagnostic(JSON.stringify(counts));
      assert.equal(countOf(counts, 4, PORT, "denied"), 0, "x/a's own datagrams are denied by x/t's policy");
      assert.equal(countOf(counts, 4, PORT, "spoof"), 0, `none of the ${ROUNDS} ${encapsulation}-wrapped datagrams "from x/b" reached x/t`);
    });
  });
}
