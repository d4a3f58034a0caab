/**
 * NetworkPolicy end to end, upstream style: every scenario of scenarios.ts on one sandbox
 * cluster (suite.ts), each step's probed matrix compared with its hand-written grid and
 * with `sluicectl explain`'s matrix.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { nsExec } from "../../../src/sandbox/netns.js";
import { SCENARIOS } from "./scenarios.js";
import { kubeProxyNftablesCoexistence } from "./coexistence.js";
import { policySuite } from "./suite.js";

policySuite("np", "NetworkPolicy end to end (sandbox: vxlan, 3 nodes, FORWARD DROP; x,y,z × a,b,c)", SCENARIOS, (sb) => {
  test("every node runs with FORWARD policy DROP (Docker >= 1.13), so nothing is accepted by default", async () => {
    for (const n of sb.nodes) assert.match(await nsExec(n.ns, "iptables", ["-S", "FORWARD"]), /^-P FORWARD DROP$/m, n.name);
  });
  kubeProxyNftablesCoexistence(sb);
});
