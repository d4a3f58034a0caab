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
import { NODES, POD_KEYS } from "./model.js";
import { Oracle } from "./oracle.js";
import { BULLETS, type Bullet, SCENARIOS, stepTitle } from "./scenarios.js";
import { SimulatedCluster, parsePolicyDocs } from "./state.js";

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
    const st = new SimulatedCluster().state;
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
      const sim = new SimulatedCluster();
      const st = sim.state;
      const oracle = new Oracle(st);
      sc.steps.forEach((step, i) => {
        sim.perform(step);
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
