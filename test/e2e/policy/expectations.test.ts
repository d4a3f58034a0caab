/**
 * Checks the scenario data itself, without a cluster: every grid parses, has a connected
 * diagonal, and agrees with an independent re-derivation from the specs (oracle.ts);
 * every object is one `sluicectl apply` / kubectl would accept; every semantic bullet is
 * covered. A disagreement here means a hand-written grid (or the oracle) is wrong, and
 * must be settled by reading the spec, not by copying the oracle's answer.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, parseManifests } from "../../../src/ctl/manifests.js";
import { type Matrix, type Protocol, describeDiff, parseMatrix } from "../../helpers/policyMatrix.js";
import { CLUSTER_BULLETS, CLUSTER_SCENARIOS } from "./clusterScenarios.js";
import { EXTERNAL_HOST, NODES, POD_KEYS } from "./model.js";
import { Oracle } from "./oracle.js";
import { BULLETS, SCENARIOS, type Scenario, stepTitle } from "./scenarios.js";
import { SimulatedCluster } from "./state.js";

function oracleMatrix(o: Oracle, port: number, protocol: Protocol): Matrix {
  return { pods: [...POD_KEYS], cells: POD_KEYS.map((f) => POD_KEYS.map((t) => o.allowed(f, t, port, protocol))) };
}

const SUITES: Array<{ title: string; scenarios: Scenario<string>[]; bullets: Record<string, string>; atLeast: number }> = [
  { title: "NetworkPolicy", scenarios: SCENARIOS, bullets: BULLETS, atLeast: 30 },
  { title: "cluster tiers", scenarios: CLUSTER_SCENARIOS, bullets: CLUSTER_BULLETS, atLeast: 10 },
];

for (const suite of SUITES) {
  describe(`${suite.title} e2e scenarios (data checks, no cluster)`, () => {
    test(`at least ${suite.atLeast} scenarios, uniquely named, covering every bullet`, () => {
      assert.ok(suite.scenarios.length >= suite.atLeast, `${suite.scenarios.length} scenarios`);
      assert.equal(new Set(suite.scenarios.map((s) => s.name)).size, suite.scenarios.length, "scenario names are unique");
      const covered = new Set(suite.scenarios.flatMap((s) => s.covers));
      const missing = Object.keys(suite.bullets).filter((b) => !covered.has(b));
      assert.deepEqual(missing, [], "bullets without a scenario");
    });

    test("every grid parses and has a connected diagonal; ICMP steps have port 0, the others 80 or 81", () => {
      for (const sc of suite.scenarios) {
        sc.steps.forEach((s, i) => {
          const m = parseMatrix(s.expected, POD_KEYS);
          m.cells.forEach((row, r) => assert.ok(row[r], `${stepTitle(sc, i)}: ${POD_KEYS[r]} -> itself must be '.'`));
          assert.equal(s.protocol === "ICMP", s.port === 0, `${stepTitle(sc, i)}: port ${s.port} with ${s.protocol}`);
        });
      }
    });

    test("every object is valid (as sluicectl apply checks it)", () => {
      const st = new SimulatedCluster().state;
      for (const sc of suite.scenarios) {
        sc.steps.forEach((s, i) => {
          if (!s.apply) return;
          const parsed = parseManifests([{ name: "step", text: st.fill(s.apply) }], { validate: true });
          assert.deepEqual(parsed.problems.map(formatProblem), [], stepTitle(sc, i));
        });
      }
    });

    for (const sc of suite.scenarios) {
      test(`grids agree with an independent reading of the specs: ${sc.name}`, () => {
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
          for (const h of step.hosts ?? []) {
            assert.ok(h.host === EXTERNAL_HOST || (NODES as readonly string[]).includes(h.host), `${title}: unknown host ${h.host}`);
            assert.equal(h.expect === ".", oracle.allowedToHost(h.from, h.host, step.port, step.protocol), `${title}: host probe ${h.from} -> ${h.host}`);
          }
        });
      });
    }
  });
}
