/**
 * A restart of the agents reconciles policy in place: an established allowed connection
 * keeps flowing, new allowed connections keep connecting, and no denied connection gets
 * through at any moment while the agents are down or starting up (the filter table is
 * only rewritten once the policy data has been listed, and then only where it differs).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { EtcdResourceStore } from "../../src/datastore/etcdResources.js";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { createNamespace, createPod } from "../../src/sandbox/pods.js";
import { openPodStream, probe } from "../../src/sandbox/probe.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { testCluster } from "../helpers/cluster.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const POLICY = {
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name: "b-admits-a", namespace: "x" },
  spec: { podSelector: { matchLabels: { pod: "b" } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "a" } } }] }] },
};

describe("policy through agent restarts", () => {
  const sb = testCluster("prs", { backend: "vxlan", nodes: 2, segments: 1 });
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
  });
  after(() => etcd?.close());

  test("established and new allowed connections keep working; no denied connection gets through", async () => {
    const [n1, n2] = sb.nodes as [SandboxNode, SandboxNode];
    const stream = await openPodStream(sb, "x/a", "x/b", 80); // node-1 -> node-2, allowed
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
    const denied: string[] = [];
    const refused: string[] = [];
    let rounds = 0;
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const [bad, good] = await Promise.all([probe(sb, "x/c", "x/b", { port: 80, timeoutMs: 400 }), probe(sb, "x/a", "x/b", { port: 80, timeoutMs: 1000 })]);
        rounds++;
        if (bad.connected) denied.push(`round ${rounds}: x/c reached x/b`);
        if (!good.connected) refused.push(`round ${rounds}: x/a could not reach x/b (${good.status}${good.detail ? `: ${good.detail}` : ""})`);
      }
    })();
    try {
      await sleep(300);
      await Promise.all([sb.stopAgent(n1), sb.stopAgent(n2)]);
      await sleep(800); // both agents down: the dataplane stays as it was
      await Promise.all([sb.startAgent(n1), sb.startAgent(n2)]);
      await Promise.all([sb.waitReady(n1), sb.waitReady(n2)]);
      await sleep(2500); // past the agents' first full resyncs (1 s in the sandbox)
    } finally {
      sending = false;
      probing = false;
      await Promise.all([sender, prober]);
    }
    const want = sent.join("");
    await eventually(async () => stream.received.length >= want.length, 5000, 50);
    stream.close();
    assert.ok(rounds >= 5, `probed throughout (${rounds} rounds)`);
    assert.deepEqual(denied, [], "a denied connection got through");
    assert.deepEqual(refused, [], "a new allowed connection failed");
    assert.equal(stream.closedWith, undefined, "the established connection was not reset");
    assert.equal(stream.received, want, "every message of the established connection came back, in order");
  });
});
