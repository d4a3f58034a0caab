/**
 * Runs in the kernel-feature VM, on the cluster of sandboxCluster.guest.ts: upstream NetworkPolicy's
 * SCTP cases with real SCTP associations between sandbox pods, which the host's kernel cannot
 * make (no SCTP sockets). Pods serve 80/TCP, 80/SCTP and 81/SCTP; every probe is a real
 * connect + echo from inside the source pod.
 *
 * The cases follow the Kubernetes e2e suite's [Feature:SCTPConnectivity] ones: a default-deny
 * ingress policy blocks SCTP; a policy allowing one SCTP port admits exactly that port (and
 * neither TCP on the same number nor the other SCTP port); a peer allowed by namespace and pod
 * selector over SCTP is the only one admitted; and an SCTP-only rule leaves TCP isolated.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { type KubeObject, networkPolicyKind } from "../../../src/config/resourceKinds.js";
import { EtcdResourceStore } from "../../../src/datastore/etcdResources.js";
import { createNamespace, createPod } from "../../../src/sandbox/pods.js";
import { type ProbeProtocol, formatMatrix, reachability, waitForReachability } from "../../../src/sandbox/probe.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";

const PODS = ["x/a", "x/b", "y/a"];
const PORTS = [
  { name: "tcp-80", containerPort: 80, protocol: "TCP" as const },
  { name: "sctp-80", containerPort: 80, protocol: "SCTP" as const },
  { name: "sctp-81", containerPort: 81, protocol: "SCTP" as const },
];
// TCG makes every process slow to start (python3's SCTP helper included): generous probe timeouts.
const PROBE = { timeoutMs: 3000, withinMs: 60_000 };

const np = (namespace: string, name: string, spec: Record<string, unknown>): KubeObject & { spec: unknown } => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { namespace, name },
  spec,
});

/** The SCTP cases on `sb` (two nodes): namespaces x and y, pods x/a (node 1), x/b and y/a (node 2). */
export function sctpPolicyTests(sb: Sandbox): void {
  describe("SCTP NetworkPolicy with real SCTP associations", () => {
    let etcd: Etcd3;
    let store: EtcdResourceStore;

    before(async () => {
      etcd = sb.etcdClient();
      store = new EtcdResourceStore(etcd);
      await Promise.all([createNamespace(sb, "x", { ns: "x" }), createNamespace(sb, "y", { ns: "y" })]);
      // One at a time: on the emulated CPU parallel plugin runs only compete for it.
      await createPod(sb, { namespace: "x", name: "a", node: 1, labels: { pod: "a" }, ports: PORTS });
      await createPod(sb, { namespace: "x", name: "b", node: 2, labels: { pod: "b" }, ports: PORTS });
      await createPod(sb, { namespace: "y", name: "a", node: 2, labels: { pod: "a" }, ports: PORTS });
    });
    after(() => etcd?.close());
    const removePolicy = (name: string): Promise<boolean> => store.delete({ kind: networkPolicyKind, namespace: "x", name });

    /** Waits until the matrix on `port`/`protocol` is `allowed` (every pair, self included). */
    async function expectMatrix(port: number, protocol: ProbeProtocol, allowed: (from: string, to: string) => boolean): Promise<void> {
      const expected = reachability(PODS, allowed);
      const { matrix, diff } = await waitForReachability(sb, expected, { port, protocol, ...PROBE });
      assert.deepEqual(diff, [], `${port}/${protocol}:\n${formatMatrix(matrix, { expected })}`);
    }
    const toXa = (allowedFrom: readonly string[]) => (from: string, to: string): boolean => to !== "x/a" || from === "x/a" || allowedFrom.includes(from);

    test("with no policy, every pod reaches every pod over SCTP on both ports", async () => {
      await expectMatrix(80, "SCTP", () => true);
      await expectMatrix(81, "SCTP", () => true);
    });

    test("default-deny ingress in x blocks SCTP into x (a pod still reaches itself)", async () => {
      await store.applyAll([np("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress"] })]);
      await expectMatrix(80, "SCTP", (from, to) => !to.startsWith("x/") || from === to);
      await removePolicy("deny-all");
      await expectMatrix(80, "SCTP", () => true);
    });

    test("a policy allowing 81/SCTP into x/a admits SCTP on 81 only: not SCTP 80, not TCP 80", async () => {
      await store.applyAll([np("x", "sctp-81", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ protocol: "SCTP", port: 81 }] }] })]);
      await expectMatrix(81, "SCTP", () => true);
      await expectMatrix(80, "SCTP", toXa([]));
      await expectMatrix(80, "TCP", toXa([]));
      await removePolicy("sctp-81");
    });

    test("SCTP from a pod in another namespace, by namespace and pod selector: only y/a gets in, only over SCTP", async () => {
      await store.applyAll([
        np("x", "from-y-a", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } }, podSelector: { matchLabels: { pod: "a" } } }], ports: [{ protocol: "SCTP", port: 80 }] }],
        }),
      ]);
      await expectMatrix(80, "SCTP", toXa(["y/a"]));
      await expectMatrix(81, "SCTP", toXa([]));
      await expectMatrix(80, "TCP", toXa([]));
      await removePolicy("from-y-a");
      await expectMatrix(80, "SCTP", () => true);
    });
  });
}
