/**
 * Kubernetes mode end to end: a 3-node sandbox whose agents run with --kube-subnet-mgr
 * against the fake API server (test/helpers/fakeKubeApi.ts), started inside the sandbox's
 * underlay namespace; the sandbox writes Node objects with podCIDRs, Namespaces and Pods
 * there (a Pod's status.podIPs only after its CNI ADD, as a kubelet reports it), and
 * sluice-cni runs without etcd, waiting for the agent's policy-ready mark.
 *
 * A subset of the NetworkPolicy scenarios (test/e2e/policy/scenarios.ts) with real traffic,
 * then what only this mode has: node annotations and NetworkUnavailable=False, the
 * policy-ready wait, an API outage that leaves traffic and policy as they were, a 404 on a
 * relist that is not an empty list, and addresses no host may have that freeze nothing.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type KubeObject, apiVersionOf } from "../../src/config/resourceKinds.js";
import type { PolicyModel } from "../../src/policy/model.js";
import type { ObjectRef } from "./policy/state.js";
import { annotationKeys } from "../../src/datastore/kubeSubnetManager.js";
import { hostIfaceName } from "../../src/model/endpoint.js";
import { SANDBOX_POLICY_READY_TIMEOUT_MS } from "../../src/sandbox/cluster.js";
import { runCni } from "../../src/sandbox/cni.js";
import { addNetns, delNetns, nsExec } from "../../src/sandbox/netns.js";
import { nodeSubnet } from "../../src/sandbox/nodes.js";
import type { StoredObject } from "../../src/sandbox/objects.js";
import { testCluster } from "../helpers/cluster.js";
import { FakeKubeApiProcess } from "../helpers/fakeKubeApi.js";
import { KubeModelLoader } from "../helpers/kubeModelLoader.js";
import { type PolicyObjectStore, SandboxPolicyHarness, kindOf, namespacedObjectKinds } from "./policy/sandboxHarness.js";
import { DEFAULT_RUNNER_OPTIONS, PolicySuiteRunner } from "./policy/runner.js";
import { type Scenario, SCENARIOS, X_CLOSED, doc } from "./policy/scenarios.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { podObject } from "../helpers/kube.js";
import { CLUSTER_SCENARIOS, X_NOT_FROM_Y } from "./policy/clusterScenarios.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The scenarios run here: cross-node all of them (the 9×9 grid spans three nodes). */
const SUBSET = [
  "deny-all ingress in x (policyTypes [Ingress], no rules); own node still reaches its pods",
  "peer namespaceSelector alone selects every pod of the matching namespaces",
  "policy updated in place: peers, then the selected pod, then the direction",
  "pod label changes add and remove peers (remote node, then same node)",
  "namespace labels changed: peers follow the namespaceSelector",
  "a selected pod deleted and created again (other node, then home) is isolated from the start",
  // The cluster tiers, with every kind coming from the API server (CRDs through the same informers).
  "multi-tenant: Admin Deny across tenants, Admin Pass for shared services, Baseline default-deny",
  "the external range: Baseline egress deny, opened by a GlobalNetworkSet, a NetworkSet and an Admin networks rule",
  "nodes peers: no pod may reach node-2, not even node-2's own pods; updated to node-1 and node-3",
];

/**
 * Policy objects in the fake API server, put there as kubectl apply would. The server
 * lives in the underlay namespace (control goes over IPC), so the model explain judges by
 * is loaded there: `sluicectl explain`'s Kubernetes loader (the agents' KubePolicySource,
 * over real HTTP) in one long-lived process inside that namespace (KubeModelLoader), which
 * lists every kind afresh for each step and hands the model back. The runner then compares
 * explain with the probes at every step, as in etcd mode.
 */
class KubePolicyObjectStore implements PolicyObjectStore {
  constructor(
    private readonly api: FakeKubeApiProcess["control"],
    private readonly where: () => { netns: string; url: string },
  ) {}

  /** While the test makes the API unreadable on purpose: the agents keep their last state, and explain judges by the last model it read. */
  unreadable = false;
  private last: PolicyModel | undefined;

  async loadModel(): Promise<PolicyModel> {
    if (this.unreadable && this.last) return this.last;
    this.last = await this.readModel();
    return this.last;
  }

  private loader: Promise<KubeModelLoader> | undefined;

  private async readModel(): Promise<PolicyModel> {
    const { netns, url } = this.where();
    this.loader ??= KubeModelLoader.start(netns);
    return (await this.loader).load(url);
  }

  async apply(objects: readonly KubeObject[]): Promise<void> {
    for (const o of objects) await this.api.put(o as unknown as StoredObject);
  }

  async delete(ref: ObjectRef): Promise<void> {
    await this.api.remove({ apiVersion: apiVersionOf(kindOf(ref.kind)), kind: ref.kind, namespace: ref.namespace, name: ref.name });
  }

  async deleteNamespaced(namespace: string): Promise<void> {
    for (const kind of namespacedObjectKinds()) {
      for (const o of await this.api.list(apiVersionOf(kind), kind.kind)) if (o.metadata.namespace === namespace) await this.api.remove({ apiVersion: apiVersionOf(kind), kind: kind.kind, namespace, name: o.metadata.name });
    }
  }

  async close(): Promise<void> {
    const loader = this.loader;
    this.loader = undefined;
    await (await loader?.catch(() => undefined))?.stop();
  }
}

/** The suite, once per dataplane (`--dataplane`): the same tests, the kernel's view read as that dataplane keeps it. */
function kubeModeSuite(dataplane: "iptables" | "nftables"): void {
  describe(`Kubernetes mode (sandbox: vxlan, 3 nodes, agents with --kube-subnet-mgr against an API server in the underlay; ${dataplane})`, () => {
    let api: FakeKubeApiProcess | undefined;
    const control = (): FakeKubeApiProcess["control"] => {
      if (!api) throw new Error("the API server did not start");
      return api.control;
    };
    const sb = testCluster(dataplane === "iptables" ? "km" : "kmn", {
      backend: "vxlan",
      nodes: 3,
      segments: 1,
      agentArgs: ["--dataplane", dataplane],
      policyReadyTimeoutMs: SANDBOX_POLICY_READY_TIMEOUT_MS,
      kubeApi: async (netns, host) => {
        api = await FakeKubeApiProcess.start({ netns, host, port: 6443 });
        const p = api;
        return { url: p.url, objects: p.control, stop: () => p.stop() };
      },
    });
    let runner: PolicySuiteRunner | undefined;
    let store: KubePolicyObjectStore | undefined;
    const unreadable = (on: boolean): void => {
      if (store) store.unreadable = on;
    };
    let lines: string[] = [];
    const runnerOf = (): PolicySuiteRunner => {
      if (!runner) throw new Error("the cluster did not come up");
      return runner;
    };

    before(async () => {
      const where = (): { netns: string; url: string } => ({ netns: sb.underlayNs, url: api?.url ?? "" });
      store = new KubePolicyObjectStore(control(), where);
      runner = new PolicySuiteRunner(new SandboxPolicyHarness(sb, store), { ...DEFAULT_RUNNER_OPTIONS, log: (m) => lines.push(m) });
      await runner.setup();
      await runner.settle();
      assert.equal(await runner.checkClean(), "", lines.join("\n"));
    });
    // The loader process lives in the underlay namespace and would outlive it.
    after(async () => store?.close());

    test("each agent published its node's annotations and set NetworkUnavailable=False; subnets are the nodes' podCIDRs", async () => {
      const keys = annotationKeys("sluice.dev");
      for (const n of sb.nodes) {
        const node = (await control().get({ apiVersion: "v1", kind: "Node", name: n.name })) as StoredObject & { status?: { conditions?: Array<{ type: string; status: string; reason?: string }> } };
        const ann = (node.metadata["annotations"] ?? {}) as Record<string, string>;
        assert.equal(ann[keys.publicIP], n.address, `${n.name} public-ip`);
        assert.equal(ann[keys.backendType], "vxlan");
        assert.match(ann[keys.backendData] ?? "", /"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"/);
        assert.equal(ann[keys.subnetKubeManaged], "true");
        const cond = node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
        assert.equal(cond?.status, "False", `${n.name} NetworkUnavailable: ${JSON.stringify(node.status?.conditions)}`);
        assert.equal(await nodeSubnet(n), sb.podCidrOf(n.index), `${n.name} subnet.env follows spec.podCIDR`);
      }
    });

    for (const name of SUBSET) {
      const sc = [...SCENARIOS, ...CLUSTER_SCENARIOS].find((s) => s.name === name);
      test(name, { timeout: 60_000 }, async (t) => {
        assert.ok(sc, `scenario "${name}" exists`);
        lines = [];
        try {
          const r = runnerOf();
          if ((await r.reset()).length) await r.settle();
          await r.runScenario(sc);
        } finally {
          for (const l of lines) t.diagnostic(l);
        }
      });
    }

    test("policy-ready wait: ADD returns only once the new pod's chains are in the filter table", async (t) => {
      const r = runnerOf();
      await r.reset();
      const node = sb.nodeByName("node-2");
      const netns = `${sb.o.prefix}-pod-x.ready`;
      const containerId = randomBytes(16).toString("hex");
      const args = { containerId, netnsPath: `/var/run/netns/${netns}`, ifName: "eth0", podNamespace: "x", podName: "ready" };
      await addNetns(netns);
      try {
        const t0 = Date.now();
        const result = await runCni(sb, node, "ADD", args);
        const ms = Date.now() - t0;
        const iface = hostIfaceName("x", "ready");
        const ip = (result.ips?.[0]?.address ?? "").split("/")[0] as string;
        const dotted = ip.replace(/\./g, "\\.");
        if (dataplane === "iptables") {
          const rules = await nsExec(node.ns, "iptables-save", ["-t", "filter"]);
          assert.match(rules, new RegExp(`-A slc-to-wl -o ${iface} .*-g slc-tw-${iface}`), "ingress dispatch in place when ADD returns");
          assert.match(rules, new RegExp(`-A slc-fw-${iface} .*! -s ${dotted}/32 `), "anti-spoofing with its address");
        } else {
          const table = await nsExec(node.ns, "nft", ["list", "table", "ip", "sluice"]);
          assert.match(table, new RegExp(`oifname vmap \\{[^}]*"${iface}" : goto slc-tw-${iface}`), "ingress dispatch in place when ADD returns");
          assert.match(table, new RegExp(`chain slc-fw-${iface} \\{\\s*ip saddr != ${dotted} drop`), "anti-spoofing with its address");
        }
        t.diagnostic(`ADD with the policy-ready wait took ${ms} ms`);
        await runCni(sb, node, "DEL", args);
      } finally {
        await delNetns(netns);
      }
    });

    const CNP_VERSION = "policy.networking.k8s.io/v1alpha2";
    /** GET lists of ClusterNetworkPolicies since `since`, by the node asking. */
    const cnpLists = async (since: number, status: number): Promise<Set<string>> => {
      const reqs = await control().requests({ method: "GET", path: "/clusternetworkpolicies" });
      return new Set(reqs.filter((q) => !q.watch && q.at >= since && q.status === status).map((q) => q.remote));
    };
    const everyNodeIn = (s: Set<string>): boolean => sb.nodes.every((n) => s.has(n.address));

    test("a 404 on the ClusterNetworkPolicy relist (after a 410) is not an empty list: the Admin Deny still drops real traffic", async (t) => {
      const r = runnerOf();
      await r.reset();
      const deny: Scenario<string> = {
        name: "an Admin Deny of everything into x, through a relist answered 404",
        covers: [],
        steps: [{ apply: doc(CNP_VERSION, "ClusterNetworkPolicy", "{name: admin-deny-x}", "tier: Admin\npriority: 3\nsubject:\n  namespaces: {matchLabels: {ns: x}}\ningress:\n- action: Deny\n  from:\n  - namespaces: {}"), port: 80, protocol: "TCP", expected: X_CLOSED }],
      };
      await r.runScenario(deny);
      const since = Date.now();
      unreadable(true);
      await control().failLists(CNP_VERSION, "ClusterNetworkPolicy", 404);
      try {
        await control().expireWatches();
        assert.ok(await eventually(async () => everyNodeIn(await cnpLists(since, 404)), 20_000), "every agent relisted and was answered 404");
        await sleep(DEFAULT_RUNNER_OPTIONS.settleMs); // what the agents did with it is in the kernel by now
        await r.runScenario({ ...deny, steps: deny.steps.map((st) => ({ ...st, apply: undefined })) });
      } finally {
        const cleared = Date.now();
        await control().failLists(CNP_VERSION, "ClusterNetworkPolicy", 0);
        unreadable(false);
        assert.ok(await eventually(async () => everyNodeIn(await cnpLists(cleared, 200)), 20_000), "every agent listed again once the lists work");
      }
      t.diagnostic("the Deny held through the 410 and the relists answered 404");
    });

    test("a Node with 0.0.0.0 and pods with :: and 0.0.0.0 arrive: policy changes elsewhere still apply and new pods still start", async (t) => {
      const r = runnerOf();
      await r.reset();
      // A node nobody runs, whose kubelet reports unspecified addresses, and two pods of x on it.
      const node9 = { apiVersion: "v1", kind: "Node", metadata: { name: "node-9", labels: { poisoned: "yes" } }, spec: {}, status: { addresses: [{ type: "InternalIP", address: "0.0.0.0" }, { type: "InternalIP", address: "::" }, { type: "Hostname", address: "node-9" }] } };
      const pods = [podObject("x", "bad4", { node: "node-9", ips: ["0.0.0.0"], labels: { pod: "bad4" } }), podObject("x", "bad6", { node: "node-9", ips: ["::"], labels: { pod: "bad6" } })];
      await control().put(node9);
      for (const p of pods) await control().put(p);
      try {
        // A policy whose sets would hold those addresses: y may reach neither x's pods nor node-9.
        const spec = "tier: Admin\npriority: 4\nsubject:\n  namespaces: {matchLabels: {ns: y}}\negress:\n- action: Deny\n  to:\n  - pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {}}\n  - nodes: {matchLabels: {poisoned: \"yes\"}}";
        await r.runScenario({ name: "y denied egress to x and to node-9 while node-9 and x's pods there carry unspecified addresses", covers: [], steps: [{ apply: doc(CNP_VERSION, "ClusterNetworkPolicy", "{name: deny-y-to-x}", spec), port: 80, protocol: "TCP", expected: X_NOT_FROM_Y }] });
        // And a pod still starts: ADD waits for its chains, which a frozen apply would never write.
        const node = sb.nodeByName("node-1");
        const netns = `${sb.o.prefix}-pod-z.late`;
        const args = { containerId: randomBytes(16).toString("hex"), netnsPath: `/var/run/netns/${netns}`, ifName: "eth0", podNamespace: "z", podName: "late" };
        await addNetns(netns);
        try {
          const t0 = Date.now();
          const result = await runCni(sb, node, "ADD", args);
          assert.ok(result.ips?.[0]?.address, "ADD returned an address");
          t.diagnostic(`ADD with the policy-ready wait took ${Date.now() - t0} ms`);
          await runCni(sb, node, "DEL", args);
        } finally {
          await delNetns(netns);
        }
        for (const n of sb.nodes) assert.match(readFileSync(join(n.stateDir, "agent.log"), "utf8"), /values no host may have are dropped from the object/, `${n.name} warned`);
      } finally {
        for (const p of pods) await control().remove({ apiVersion: "v1", kind: "Pod", namespace: "x", name: p.metadata.name });
        await control().remove({ apiVersion: "v1", kind: "Node", name: "node-9" });
      }
    });

    test("an API outage keeps traffic and policy as they were; changes apply again after it", async (t) => {
      const r = runnerOf();
      await r.reset();
      const deny = SCENARIOS.find((s) => s.name === SUBSET[0]) as (typeof SCENARIOS)[number];
      await r.runScenario(deny); // x isolated for ingress
      const failures = (): number[] => sb.nodes.map((n) => readFileSync(join(n.stateDir, "agent.log"), "utf8").split("watch failed; keeping the last known state").length - 1);
      const before0 = failures();
      unreadable(true);
      await control().outage();
      try {
        await sleep(3000); // long enough for every agent to see its watches fail and its relists refused
        assert.ok(failures().every((n, i) => n > (before0[i] as number)), "every agent noticed the outage");
        // The same grid again, no actions: traffic and policy as they were.
        await r.runScenario({ ...deny, steps: deny.steps.map((s) => ({ ...s, apply: undefined })) });
      } finally {
        await control().recover();
        unreadable(false);
      }
      // The policy's deletion reaches the agents once their watches are back (after their relist back-off).
      await r.reset();
      const deleted = Date.now();
      let left = "";
      const deadline = Date.now() + 20_000;
      do {
        await sleep(1000);
        left = await r.checkClean();
      } while (left && Date.now() < deadline);
      assert.equal(left, "", "after the outage, the policy's deletion took effect");
      t.diagnostic(`the deletion after the outage was in force ${Date.now() - deleted} ms after it was made`);
    });
  });
}

kubeModeSuite("iptables");
kubeModeSuite("nftables");
