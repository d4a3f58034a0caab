/**
 * Runs in the kernel-feature VM, on the cluster of sandboxCluster.guest.ts (after the SCTP
 * cases, so they never see IPVS): kube-proxy in IPVS mode, which this host's kernel cannot
 * do, with real traffic through real IPVS virtual services. Node 1 gets what kube-proxy would make there: a kube-ipvs0 dummy
 * device holding two ClusterIPs, one virtual service each (ipvsadm, NAT mode), whose real
 * servers are pods: 10.96.0.10 -> svc/local (on node 1, beside svc/client), 10.96.0.11 ->
 * svc/remote (on node 2); and net.ipv4.vs.conntrack=1, as kube-proxy sets it. Service traffic
 * then goes INPUT -> IPVS -> OUTPUT on node 1, never FORWARD: the client's egress policy and
 * the local backend's ingress policy must still decide it (src/render/kubeIpvs.ts), and the
 * agent must add that path only where kube-ipvs0 exists.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { type KubeObject, networkPolicyKind } from "../../../src/config/resourceKinds.js";
import { EtcdResourceStore } from "../../../src/datastore/etcdResources.js";
import { eventually } from "../../../src/sandbox/endpoints.js";
import { ip, nsExec } from "../../../src/sandbox/netns.js";
import { createNamespace, createPod, getPod } from "../../../src/sandbox/pods.js";
import { probe, probeFromNode } from "../../../src/sandbox/probe.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";

const NS = "svc";
const SVC_LOCAL = "10.96.0.10";
const SVC_REMOTE = "10.96.0.11";
// TCG makes every process slow: a blocked probe costs its timeout, so keep it short but not tight.
const PROBE = { port: 80, timeoutMs: 3000 };
const WITHIN_MS = 60_000;

const np = (name: string, spec: Record<string, unknown>): KubeObject & { spec: unknown } => ({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { namespace: NS, name }, spec });

/** The IPVS cases on `sb` (two nodes): namespace svc, its pods, kube-ipvs0 and the virtual services on node 1. */
export function ipvsPolicyTests(sb: Sandbox): void {
  describe("kube-proxy in IPVS mode: Service traffic through real IPVS is policed", () => {
    let etcd: Etcd3;
    let store: EtcdResourceStore;
    const node = (n: number): { name: string; ns: string; address: string } => sb.nodeByName(`node-${n}`);
    const ipvsRules = async (n: number): Promise<string[]> => (await nsExec(node(n).ns, "iptables-save", ["-t", "filter"])).split("\n").filter((l) => /slc-ipvs|0x80000/.test(l));

    /** Every probe at once, again until each connects or not as `want` says (a policy change takes an apply), then the verdicts. */
    async function expectReach(cases: ReadonlyArray<{ what: string; run: () => Promise<boolean>; want: boolean }>): Promise<void> {
      const deadline = Date.now() + WITHIN_MS;
      let got: boolean[] = [];
      do {
        got = await Promise.all(cases.map((c) => c.run()));
        if (got.every((g, i) => g === cases[i]?.want)) return;
      } while (Date.now() < deadline);
      assert.deepEqual(
        cases.map((c, i) => `${c.what}: ${got[i] ? "connects" : "blocked"}`),
        cases.map((c) => `${c.what}: ${c.want ? "connects" : "blocked"}`),
      );
    }
    const fromClient = (svc: string) => async (): Promise<boolean> => (await probe(sb, `${NS}/client`, svc, PROBE)).connected;
    const fromNode2 = (svc: string) => async (): Promise<boolean> => ((await probeFromNode(sb, "node-2", [svc], PROBE))[0]?.connected ?? false);

    before(async () => {
      etcd = sb.etcdClient();
      store = new EtcdResourceStore(etcd);
      await createNamespace(sb, NS);
      // One at a time: on the emulated CPU parallel plugin runs only compete for it.
      await createPod(sb, { namespace: NS, name: "client", node: 1, labels: { app: "client" } });
      await createPod(sb, { namespace: NS, name: "local", node: 1, labels: { app: "backend", at: "local" } });
      await createPod(sb, { namespace: NS, name: "remote", node: 2, labels: { app: "backend", at: "remote" } });
    });
    after(() => etcd?.close());

    test("without kube-ipvs0 no agent adds an IPVS rule; with it on node 1, node 1's agent does (and only it)", async () => {
      assert.deepEqual(await ipvsRules(1), []);
      assert.deepEqual(await ipvsRules(2), []);
      const ns = node(1).ns;
      await ip("-n", ns, "link", "add", "kube-ipvs0", "type", "dummy"); // kube-proxy leaves it down; its addresses are local all the same
      for (const [svc, backend] of [
        [SVC_LOCAL, getPod(sb, `${NS}/local`)],
        [SVC_REMOTE, getPod(sb, `${NS}/remote`)],
      ] as const) {
        await ip("-n", ns, "addr", "add", `${svc}/32`, "dev", "kube-ipvs0");
        await nsExec(ns, "ipvsadm", ["-A", "-t", `${svc}:80`, "-s", "rr"]);
        await nsExec(ns, "ipvsadm", ["-a", "-t", `${svc}:80`, "-r", `${backend.ips[0] as string}:80`, "-m"]);
      }
      await nsExec(ns, "sysctl", ["-qw", "net.ipv4.vs.conntrack=1"]);
      // Node 2 reaches the Services through node 1, as a NodePort client outside node 1 would.
      await ip("-n", node(2).ns, "route", "add", "10.96.0.0/24", "via", node(1).address);
      assert.ok(await eventually(async () => (await ipvsRules(1)).length > 0, 30_000), "node 1's agent adds the IPVS path");
      assert.ok((await ipvsRules(1)).some((l) => l.includes(`-s ${getPod(sb, `${NS}/client`).ips[0] as string}/32`)), "naming the client by its address");
      assert.deepEqual(await ipvsRules(2), [], "node 2 has no kube-ipvs0");
    });

    test("no policy: the client reaches both backends through their Services (IPVS carries it), and so does node 2", async () => {
      await expectReach([
        { what: "client -> local backend", run: fromClient(SVC_LOCAL), want: true },
        { what: "client -> remote backend", run: fromClient(SVC_REMOTE), want: true },
        { what: "node 2 -> local backend", run: fromNode2(SVC_LOCAL), want: true },
      ]);
      const conns = await nsExec(node(1).ns, "ipvsadm", ["-L", "-n", "-c"]);
      for (const b of [`${NS}/local`, `${NS}/remote`]) assert.ok(conns.includes(`${getPod(sb, b).ips[0] as string}:80`), `IPVS took connections to ${b}:\n${conns}`);
    });

    test("the client's egress policy decides by the backend, not the Service address: allowed to the remote backend only", async () => {
      await store.applyAll([np("client-egress", { podSelector: { matchLabels: { app: "client" } }, policyTypes: ["Egress"], egress: [{ to: [{ podSelector: { matchLabels: { at: "remote" } } }] }] })]);
      await expectReach([
        { what: "client -> local backend", run: fromClient(SVC_LOCAL), want: false },
        { what: "client -> remote backend", run: fromClient(SVC_REMOTE), want: true },
      ]);
      await store.delete({ kind: networkPolicyKind, namespace: NS, name: "client-egress" });
    });

    test("the local backend's ingress policy decides Service traffic, from a pod and from outside the node: from node 2 only, then from the client only", async () => {
      const onlyFrom = (peer: Record<string, unknown>): KubeObject & { spec: unknown } => np("local-ingress", { podSelector: { matchLabels: { at: "local" } }, ingress: [{ from: [peer] }] });
      await store.applyAll([onlyFrom({ ipBlock: { cidr: `${node(2).address}/32` } })]);
      await expectReach([
        { what: "client -> local backend", run: fromClient(SVC_LOCAL), want: false },
        { what: "node 2 -> local backend", run: fromNode2(SVC_LOCAL), want: true },
        { what: "client -> remote backend", run: fromClient(SVC_REMOTE), want: true },
      ]);
      await store.applyAll([onlyFrom({ podSelector: { matchLabels: { app: "client" } } })]);
      await expectReach([
        { what: "client -> local backend", run: fromClient(SVC_LOCAL), want: true },
        { what: "node 2 -> local backend", run: fromNode2(SVC_LOCAL), want: false },
      ]);
      await store.delete({ kind: networkPolicyKind, namespace: NS, name: "local-ingress" });
    });
  });
}
