/**
 * The policy engine's reference evaluator (src/policy/evaluate.ts), fed the same objects
 * the e2e suite applies, must predict every hand-written grid. This runs without a
 * cluster; when the e2e suite fails and this passes, the fault is in what lies between
 * the decision and the packets (rendering, dataplane, agent wiring, timing), not in the
 * reading of the spec. The grids remain the truth here: nothing is derived from the
 * evaluator. Off-diagonal cells only: a pod reaching its own address never leaves its
 * network namespace, so no policy is consulted for it.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { networkPolicyObject } from "../../../src/config/k8sSchemas.js";
import type { PodEndpoint } from "../../../src/model/endpoint.js";
import { EndpointIndex } from "../../../src/policy/endpointIndex.js";
import { PolicyEvaluator } from "../../../src/policy/evaluate.js";
import { networkPolicyToIr } from "../../../src/policy/networkPolicy.js";
import { parseMatrix } from "../../helpers/policyMatrix.js";
import { POD_KEYS } from "./model.js";
import { SCENARIOS, stepTitle } from "./scenarios.js";
import { SimulatedCluster } from "./state.js";

describe("the reference evaluator predicts every NetworkPolicy e2e grid", () => {
  for (const sc of SCENARIOS) {
    test(sc.name, () => {
      const sim = new SimulatedCluster();
      const st = sim.state;
      sc.steps.forEach((step, i) => {
        sim.perform(step);
        const endpoints: PodEndpoint[] = [...st.pods.values()].map((p) => ({ namespace: p.namespace, pod: p.name, node: p.node, hostIface: `slc-${p.key}`, ips: [p.ip], labels: { ...p.labels }, ports: p.ports.map((x) => ({ ...x })) }));
        const index = new EndpointIndex(endpoints, [...st.namespaces.values()]);
        const policies = [...st.policies.values()].map((d) => networkPolicyToIr(networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", ...d })));
        const ev = new PolicyEvaluator(policies, index, { sctpSupported: false });
        const allowed = (from: string, to: string): boolean => ev.evaluate({ src: st.pod(from).ip, dst: st.pod(to).ip, protocol: step.protocol, port: step.port }).allowed;
        const grid = parseMatrix(step.expected, POD_KEYS);
        const wrong: string[] = [];
        POD_KEYS.forEach((from, a) =>
          POD_KEYS.forEach((to, b) => {
            if (from === to) return;
            const want = grid.cells[a]?.[b] as boolean;
            if (allowed(from, to) !== want) wrong.push(`  ${from} -> ${to}: grid says ${want ? "connected" : "blocked"}, evaluator says ${want ? "blocked" : "connected"}`);
          }),
        );
        for (const e of step.extra ?? []) {
          if (allowed(e.from, e.to) !== (e.expect === ".")) wrong.push(`  ${e.from} -> ${e.to} (extra probe): grid says ${e.expect}`);
        }
        assert.deepEqual(wrong, [], `${stepTitle(sc, i)}:\n${wrong.join("\n")}`);
      });
    });
  }
});
