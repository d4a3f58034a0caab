/**
 * Coexistence tests the NetworkPolicy suites run on their clusters, whichever dataplane the
 * agents use: kube-proxy in nftables mode beside us (its own table, DNAT at dstnat -100,
 * its filter chains at -110), and a Service address it DNATs to a pod policed by that
 * pod's policy, after the DNAT, with kube-proxy's table left exactly as it was.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyKind } from "../../../src/config/resourceKinds.js";
import { EtcdResourceStore } from "../../../src/datastore/etcdResources.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { eventually } from "../../../src/sandbox/endpoints.js";
import { nsExec } from "../../../src/sandbox/netns.js";
import { getPod } from "../../../src/sandbox/pods.js";
import { probe } from "../../../src/sandbox/probe.js";

export function kubeProxyNftablesCoexistence(sb: Sandbox): void {
  test("beside kube-proxy in nftables mode: a Service address its table DNATs to x/a is policed by x/a's policy, after the DNAT; its table is never touched", async () => {
    const VIP = "10.96.0.10";
    const target = getPod(sb, "x/a").ips[0] as string;
    // kube-proxy's shape: its own table, DNAT at dstnat in prerouting and output, its filter chains at -110.
    const kubeProxy = [
      "add table ip kube-proxy",
      "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100; policy accept; }",
      "add chain ip kube-proxy nat-output { type nat hook output priority -100; policy accept; }",
      "add chain ip kube-proxy filter-forward { type filter hook forward priority -110; policy accept; }",
      `add rule ip kube-proxy nat-prerouting ip daddr ${VIP} tcp dport 80 dnat to ${target}:80`,
      `add rule ip kube-proxy nat-output ip daddr ${VIP} tcp dport 80 dnat to ${target}:80`,
      "add rule ip kube-proxy filter-forward ct state new counter",
      "",
    ].join("\n");
    for (const n of sb.nodes) await nsExec(n.ns, "nft", ["-f", "-"], kubeProxy);
    const before = await Promise.all(sb.nodes.map((n) => nsExec(n.ns, "nft", ["list", "table", "ip", "kube-proxy"])));
    const client = sb.etcdClient();
    const store = new EtcdResourceStore(client);
    const policy = {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "a-admits-y-b", namespace: "x" },
      spec: { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "b" } } }] }] },
    };
    try {
      const viaVip = async (from: string): Promise<boolean> => (await probe(sb, from, VIP, { port: 80, timeoutMs: 1000 })).connected;
      assert.deepEqual(await Promise.all(["y/b", "z/c", "x/b"].map(viaVip)), [true, true, true], "no policy yet: the Service reaches x/a from anywhere");
      await store.applyAll([policy]);
      const enforced = await eventually(async () => !(await viaVip("z/c")), 10_000, 100);
      assert.ok(enforced, "z/c through the Service address is denied once x/a admits only y/b");
      assert.deepEqual(await Promise.all(["y/b", "z/c", "x/b", "x/c"].map(viaVip)), [true, false, false, false], "judged by the pod the DNAT chose: only y/b gets in");
      assert.equal((await probe(sb, "z/c", "x/a", { port: 80, timeoutMs: 1000 })).connected, false, "and directly, the same");
      const after = await Promise.all(sb.nodes.map((n) => nsExec(n.ns, "nft", ["list", "table", "ip", "kube-proxy"])));
      assert.deepEqual(after.map((t) => t.replace(/packets \d+ bytes \d+/g, "")), before.map((t) => t.replace(/packets \d+ bytes \d+/g, "")), "kube-proxy's table is as kube-proxy left it");
    } finally {
      await store.deleteAll([{ kind: networkPolicyKind, namespace: "x", name: "a-admits-y-b" }]);
      for (const n of sb.nodes) await nsExec(n.ns, "nft", ["delete", "table", "ip", "kube-proxy"]);
      await eventually(async () => (await probe(sb, "z/c", "x/a", { port: 80, timeoutMs: 500 })).connected, 10_000, 100);
      client.close();
    }
  });
}
