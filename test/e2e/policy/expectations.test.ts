/**
 * Checks the scenario data itself, without a cluster: every grid parses, has a connected
 * diagonal, and agrees with an independent re-derivation from the spec (oracle.ts); every
 * policy is one `sluicectl apply` / kubectl would accept; every semantic bullet is
 * covered. A disagreement here means a hand-written grid (or the oracle) is wrong, and
 * must be settled by reading the spec, not by copying the oracle's answer.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject } from "../../../src/config/k8sSchemas.js";
import { type Matrix, describeDiff, parseMatrix } from "../../helpers/policyMatrix.js";
import { NODES, POD_KEYS, CONTAINER_PORTS } from "./model.js";
import { Oracle } from "./oracle.js";
import { BULLETS, type Bullet, SCENARIOS, type Step, stepTitle } from "./scenarios.js";
import { ClusterState, parsePolicyDocs } from "./state.js";

/** Made-up addresses for the model (the real ones are learned at run time). */
function modelCluster(): ClusterState {
  const subnets: Record<string, string> = { "node-1": "10.244.11.0/24", "node-2": "10.244.12.0/24", "node-3": "10.244.13.0/24" };
  const st = new ClusterState({ network: "10.244.0.0/16", subnets });
  for (const ns of ClusterState.initialNamespaces()) st.namespaces.set(ns.name, ns);
  const next = new Map<string, number>();
  for (const p of ClusterState.initialPods()) st.pods.set(p.key, { ...p, ip: allocate(st, next, p.node) });
  return st;
}

function allocate(st: ClusterState, next: Map<string, number>, node: string): string {
  const n = (next.get(node) ?? 1) + 1;
  next.set(node, n);
  return (st.addresses.subnets[node] as string).replace(/0\/24$/, String(n));
}

/** Applies a step's actions to the model, in the runner's order. */
function perform(st: ClusterState, next: Map<string, number>, step: Step): void {
  for (const ns of step.createNamespace ?? []) {
    st.namespaces.set(ns.name, { name: ns.name, labels: { ...ns.labels } });
    for (const p of ns.pods) st.pods.set(`${ns.name}/${p.name}`, { key: `${ns.name}/${p.name}`, namespace: ns.name, name: p.name, node: p.node, labels: { ...p.labels }, ip: allocate(st, next, p.node), ports: [...CONTAINER_PORTS] });
  }
  for (const r of step.recreatePod ?? []) {
    const p = st.pod(r.pod);
    st.pods.set(r.pod, { ...p, node: r.node, ip: allocate(st, next, r.node) });
  }
  if (step.apply) st.applyPolicies(step.apply);
  for (const l of step.label ?? []) st.relabel(l);
  for (const key of step.delete ?? []) {
    assert.ok(st.policies.delete(key), `delete of unknown policy ${key}`);
  }
  for (const ns of step.deleteNamespace ?? []) st.deleteNamespace(ns);
}

function oracleMatrix(o: Oracle, port: number, protocol: "TCP" | "UDP"): Matrix {
  return { pods: [...POD_KEYS], cells: POD_KEYS.map((f) => POD_KEYS.map((t) => o.allowed(f, t, port, protocol))) };
}

describe("NetworkPolicy e2e scenarios (data checks, no cluster)", () => {
  test("at least 30 scenarios, uniquely named, covering every bullet", () => {
    assert.ok(SCENARIOS.length >= 30, `${SCENARIOS.length} scenarios`);
    assert.equal(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length, "scenario names are unique");
    const covered = new Set<Bullet>(SCENARIOS.flatMap((s) => s.covers));
    const missing = (Object.keys(BULLETS) as Bullet[]).filter((b) => !covered.has(b));
    assert.deepEqual(missing, [], "bullets without a scenario");
  });

  test("every grid parses and has a connected diagonal", () => {
    for (const sc of SCENARIOS) {
      sc.steps.forEach((s, i) => {
        const m = parseMatrix(s.expected, POD_KEYS);
        m.cells.forEach((row, r) => assert.ok(row[r], `${stepTitle(sc, i)}: ${POD_KEYS[r]} -> itself must be '.'`));
      });
    }
  });

  test("every policy document is valid networking.k8s.io/v1 (as sluicectl apply checks it)", () => {
    const st = modelCluster();
    for (const sc of SCENARIOS) {
      for (const s of sc.steps) {
        if (!s.apply) continue;
        for (const doc of parsePolicyDocs(st.fill(s.apply))) {
          const r = networkPolicyObject.safeParse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", ...doc });
          assert.ok(r.success, `${sc.name}: ${doc.metadata.namespace}/${doc.metadata.name}: ${r.success ? "" : r.error.message}`);
        }
      }
    }
  });

  for (const sc of SCENARIOS) {
    test(`grids agree with an independent reading of the spec: ${sc.name}`, () => {
      const st = modelCluster();
      const next = new Map<string, number>([["node-1", 4], ["node-2", 4], ["node-3", 4]]);
      const oracle = new Oracle(st);
      sc.steps.forEach((step, i) => {
        perform(st, next, step);
        const title = stepTitle(sc, i);
        const diff = describeDiff(title, oracleMatrix(oracle, step.port, step.protocol), parseMatrix(step.expected, POD_KEYS));
        assert.equal(diff, "", `hand-written grid (shown as "observed") disagrees with the oracle (shown as "expected"):\n${diff}`);
        for (const n of step.fromNodes ?? []) {
          assert.ok((NODES as readonly string[]).includes(n.node), `${title}: unknown node ${n.node}`);
          assert.equal(st.pod(n.to).node, n.node, `${title}: ${n.to} is not on ${n.node} at that step`);
          assert.equal(n.expect, ".", `${title}: a pod's own node always reaches it`);
        }
        for (const e of step.extra ?? []) {
          assert.equal(e.expect === ".", oracle.allowed(e.from, e.to, step.port, step.protocol), `${title}: extra probe ${e.from} -> ${e.to}`);
        }
      });
    });
  }
});
