/**
 * A restart of the agents reconciles policy in place: an established allowed connection
 * keeps flowing, new allowed flows keep getting through, and no denied flow gets through
 * at any moment while the agents are down or starting up (the filter table is only
 * rewritten once the policy data has been listed, and then only where it differs). New
 * flows are measured with UDP sequences, a datagram every 10 ms, each its own flow, so the
 * policy chains judge every one: no allowed number may be lost nor the allowed path go
 * silent for more than 100 ms, and no denied datagram may be delivered (counted where it
 * would arrive).
 *
 * The same on the native nftables dataplane, and across a switch of dataplane by restart
 * (iptables -> nftables -> iptables): each restart leaves nothing of the mode it left, and
 * the same flows hold through both switches.
 */
import { after, before, describe, test } from "node:test";
import { run } from "../../src/dataplane/exec.js";
import { nsExec } from "../../src/sandbox/netns.js";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { EtcdResourceStore } from "../../src/datastore/etcdResources.js";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { createNamespace, createPod } from "../../src/sandbox/pods.js";
import { type UdpSequenceResult, startUdpSequence } from "../../src/sandbox/udpSequence.js";
import { openPodStream, probe } from "../../src/sandbox/probe.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { testCluster } from "../helpers/cluster.js";
import { MAX_GAP_MS, SEQUENCE, type SequenceReport, describeSequence, sequenceReport } from "../helpers/udpSequence.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const POLICY = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "b-admits-a", namespace: "x" },
  spec: { podSelector: { matchLabels: { pod: "b" } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "a" } } }] }] },
};

/** What a node running one dataplane must hold, and must not hold of the other. */
async function assertDataplane(node: SandboxNode, kind: "iptables" | "nftables"): Promise<void> {
  const ipt = await nsExec(node.ns, "iptables-save", []);
  const sets = await nsExec(node.ns, "ipset", ["list", "-n"]);
  const nft = await run("ip", ["netns", "exec", node.ns, "nft", "list", "table", "ip", "sluice"]);
  if (kind === "nftables") {
    assert.equal(nft.code, 0, `${node.name}: our nftables table exists`);
    assert.match(nft.stdout, /chain slc-to-wl/, `${node.name}: the policy chains are in it`);
    assert.doesNotMatch(ipt, /slc-|SLUICE-POSTROUTING|SLUICE-PREROUTING/, `${node.name}: no policy, masquerade or anti-spoofing chain of ours left in iptables`);
    assert.match(ipt, /-A SLUICE-FORWARD -s 10\.244\.0\.0\/16 .*-j ACCEPT/, `${node.name}: the FORWARD accept rules stay in iptables`);
    assert.doesNotMatch(sets, /^slc/m, `${node.name}: no ipset of ours left`);
  } else {
    assert.notEqual(nft.code, 0, `${node.name}: no nftables table of ours left: ${nft.stdout.slice(0, 200)}`);
    assert.match(ipt, /-A SLUICE-FORWARD .*-j slc-to-wl/, `${node.name}: the policy is in iptables`);
    assert.match(sets, /^slc4-/m, `${node.name}: its ipsets too`);
  }
}

/**
 * One cluster (2 nodes, agents started with `initial`), policy enforced, then under traffic
 * the agents are restarted once per entry of `restarts` (with those extra flags) and what
 * each restart must leave is checked before the next.
 */
function restartSuite(title: string, tag: string, initial: "iptables" | "nftables", restarts: ReadonlyArray<"iptables" | "nftables">): void {
  describe(title, () => {
    const sb = testCluster(tag, { backend: "vxlan", nodes: 2, segments: 1, agentArgs: ["--dataplane", initial] });
    let etcd: Etcd3;

    before(async () => {
      etcd = sb.etcdClient();
      await createNamespace(sb, "x");
      await Promise.all([
        createPod(sb, { namespace: "x", name: "a", node: 1, labels: { pod: "a" } }),
        createPod(sb, { namespace: "x", name: "b", node: 2, labels: { pod: "b" } }),
        createPod(sb, { namespace: "x", name: "c", node: 1, labels: { pod: "c" } }),
      ]);
      await new EtcdResourceStore(etcd).applyAll([POLICY]);
      const enforced = await eventually(async () => !(await probe(sb, "x/c", "x/b", { port: 80, timeoutMs: 300 })).connected, 10_000, 100);
      assert.ok(enforced, "the policy is enforced before the restarts");
      for (const n of sb.nodes) await assertDataplane(n, initial);
    });
    after(() => etcd?.close());

    test(`established and new allowed flows keep working, none lost, no silence over 100 ms; no denied datagram gets through (restarts: ${restarts.join(" -> ")})`, async (t) => {
      const [n1, n2] = sb.nodes as [SandboxNode, SandboxNode];
      const stream = await openPodStream(sb, "x/a", "x/b", 80); // node-1 -> node-2, allowed
      const allowed = await startUdpSequence(sb, "x/a", "x/b", SEQUENCE); // node-1 -> node-2
      const denied = await startUdpSequence(sb, "x/c", "x/b", { ...SEQUENCE, port: SEQUENCE.port + 1 }); // node-1 -> node-2
      const sent: string[] = [];
      let sending = true;
      const sender = (async () => {
        for (let i = 0; sending; i++) {
          const m = `m${i}\n`;
          sent.push(m);
          stream.write(m);
          await sleep(10);
        }
      })();
      let results: [UdpSequenceResult, UdpSequenceResult] | undefined;
      try {
        await sleep(300);
        for (const mode of restarts) {
          await Promise.all([sb.stopAgent(n1), sb.stopAgent(n2)]);
          await sleep(800); // both agents down: the dataplane stays as it was
          await Promise.all([sb.startAgent(n1, ["--dataplane", mode]), sb.startAgent(n2, ["--dataplane", mode])]);
          await Promise.all([sb.waitReady(n1), sb.waitReady(n2)]);
          await sleep(2500); // past the agents' first full resyncs (1 s in the sandbox)
          for (const n of [n1, n2]) await assertDataplane(n, mode);
        }
      } finally {
        sending = false;
        await sender;
        results = await Promise.all([allowed.stop(), denied.stop()]);
      }
      const [good, bad] = results.map(sequenceReport) as [SequenceReport, SequenceReport];
      t.diagnostic(`allowed x/a -> x/b: ${describeSequence(good)}`);
      t.diagnostic(`denied x/c -> x/b: ${describeSequence(bad)}`);
      for (const [name, r] of [["x/a -> x/b", good], ["x/c -> x/b", bad]] as const) {
        assert.ok(r.sent > 300, `${name}: kept sending through the restarts: ${describeSequence(r)}`);
        assert.ok(r.sendGapMs <= MAX_GAP_MS, `${name}: the sender paused longer than ${MAX_GAP_MS} ms, so a change could hide there (an overloaded machine; re-run): ${describeSequence(r)}`);
      }
      assert.equal(bad.delivered, 0, `x/c -> x/b is denied: no datagram may be delivered, at any moment: ${describeSequence(bad)}`);
      assert.deepEqual(good.lost, [], `x/a -> x/b is allowed: every datagram arrived: ${describeSequence(good)}`);
      assert.ok(good.gapMs <= MAX_GAP_MS, `x/a -> x/b: no silence over ${MAX_GAP_MS} ms: ${describeSequence(good)}`);
      const want = sent.join("");
      await eventually(async () => stream.received.length >= want.length, 5000, 50);
      stream.close();
      assert.equal(stream.closedWith, undefined, "the established connection was not reset");
      assert.equal(stream.received, want, "every message of the established connection came back, in order");
    });
  });
}

restartSuite("policy through agent restarts", "prs", "iptables", ["iptables"]);
restartSuite("policy through agent restarts, nftables dataplane", "prsn", "nftables", ["nftables"]);
restartSuite("switching the dataplane by restart: iptables -> nftables -> iptables", "prsw", "iptables", ["nftables", "iptables"]);
