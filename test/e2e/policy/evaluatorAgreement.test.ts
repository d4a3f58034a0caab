/**
 * The policy engine's reference evaluator (src/policy/evaluate.ts), fed the same objects
 * the e2e suites apply and reached the way `sluicectl explain` reaches it (the objects
 * as the store validates them, buildPolicyModel, PolicyEvaluator.fromModel through the
 * explain library), must predict every hand-written grid and host probe. This runs
 * without a cluster; when an e2e suite fails and this passes, the fault is in what lies
 * between the decision and the packets (rendering, dataplane, agent wiring, timing), not
 * in the reading of the spec. The grids remain the truth here: nothing is derived from
 * the evaluator.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { NetworkPolicyObject } from "../../../src/config/k8sSchemas.js";
import { KINDS, type KubeObject, apiVersionOf } from "../../../src/config/resourceKinds.js";
import { Explainer } from "../../../src/ctl/explain.js";
import type { PodEndpoint } from "../../../src/model/endpoint.js";
import { buildPolicyModel } from "../../../src/policy/model.js";
import { parseMatrix } from "../../helpers/policyMatrix.js";
import { CLUSTER_SCENARIOS } from "./clusterScenarios.js";
import { NODES, POD_KEYS, nodeLabels } from "./model.js";
import { SCENARIOS, type Scenario, stepTitle } from "./scenarios.js";
import { type ClusterState, SimulatedCluster } from "./state.js";

/** A stored object of a registered kind, validated and defaulted by its schema as the store does. */
function stored(kind: string, body: Record<string, unknown>): KubeObject {
  const k = KINDS.find((x) => x.kind === kind);
  if (!k) throw new Error(`no kind ${kind} in the registry`);
  return k.schema.parse({ apiVersion: apiVersionOf(k), kind, ...body });
}

/** The explain library over what the simulated cluster holds (Node objects as the sandbox writes them). */
function explainerOf(st: ClusterState): Explainer {
  const endpoints: PodEndpoint[] = [...st.pods.values()].map((p) => ({ namespace: p.namespace, pod: p.name, node: p.node, hostIface: `slc-${p.key}`, ips: [p.ip], labels: { ...p.labels }, ports: p.ports.map((x) => ({ ...x })) }));
  const objects: Record<string, KubeObject[]> = {};
  for (const d of st.policies.values()) (objects[d.kind] ??= []).push(stored(d.kind, { metadata: d.metadata, spec: d.spec }));
  objects["Node"] = NODES.map((n) => stored("Node", { metadata: { name: n, labels: nodeLabels(n) }, status: { addresses: [{ type: "InternalIP", address: st.addresses.hosts[n] }] } }));
  const model = buildPolicyModel({ endpoints, namespaces: [...st.namespaces.values()], networkPolicies: (objects["NetworkPolicy"] ?? []) as NetworkPolicyObject[], objects });
  assert.deepEqual(model.warnings, [], "the scenario's objects draw no warnings");
  return new Explainer(model, { sctpSupported: false });
}

for (const [title, scenarios] of [["NetworkPolicy", SCENARIOS], ["cluster tiers", CLUSTER_SCENARIOS]] as Array<[string, Scenario<string>[]]>) {
  describe(`the reference evaluator predicts every ${title} e2e grid`, () => {
    for (const sc of scenarios) {
      test(sc.name, () => {
        const sim = new SimulatedCluster();
        const st = sim.state;
        sc.steps.forEach((step, i) => {
          sim.perform(step);
          const ex = explainerOf(st);
          const spec = { port: step.port, protocol: step.protocol };
          const m = ex.matrix(spec, { pods: POD_KEYS });
          const grid = parseMatrix(step.expected, POD_KEYS);
          const word = (c: boolean | undefined): string => (c ? "connected" : "blocked");
          const wrong: string[] = [];
          POD_KEYS.forEach((from, a) =>
            POD_KEYS.forEach((to, b) => {
              const want = grid.cells[a]?.[b] as boolean;
              const got = m.reachability[from]?.[to];
              if (got !== want) wrong.push(`  ${from} -> ${to}: grid says ${word(want)}, evaluator says ${word(got)}`);
            }),
          );
          const pair = (from: string, toIp: string): boolean => ex.explain(ex.resolve(from, 4, "FROM"), ex.resolve(toIp, 4, "TO"), spec).allowed;
          for (const e of step.extra ?? []) if (pair(e.from, st.pod(e.to).ip) !== (e.expect === ".")) wrong.push(`  ${e.from} -> ${e.to} (extra probe): grid says ${e.expect}`);
          for (const h of step.hosts ?? []) if (pair(h.from, st.addresses.hosts[h.host] as string) !== (h.expect === ".")) wrong.push(`  ${h.from} -> ${h.host} (host probe): grid says ${h.expect}`);
          assert.deepEqual(wrong, [], `${stepTitle(sc, i)}:\n${wrong.join("\n")}`);
        });
      });
    }
  });
}
