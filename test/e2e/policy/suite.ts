/**
 * One end-to-end policy suite: one sandbox cluster (VXLAN, 3 nodes, FORWARD policy DROP
 * as Docker >= 1.13 leaves it, an external host on the underlay) for the whole file;
 * namespaces x, y, z with pods a (node-1), b (node-2), c (node-3), each serving TCP and UDP
 * on 80 and 81; every scenario applied and probed as a full 9×9 matrix against its
 * hand-written grid, and `sluicectl explain`'s matrix compared with what was probed.
 *
 * Each scenario starts from the clean state (no policies, initial labels, pods at home):
 * the runner undoes what the previous one changed. The clean state is probed (all
 * connected) before the first scenario, after the last, and after any scenario that
 * failed; otherwise the next scenario's first grid, which differs from the clean state
 * only by its own actions, is the check.
 *
 * Pods are wired by the real sluice-cni. SLUICE_E2E_ONLY=<substring> runs only the
 * scenarios whose name contains it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { testCluster } from "../../helpers/cluster.js";
import { DEFAULT_RUNNER_OPTIONS, PolicySuiteRunner } from "./runner.js";
import { type Scenario, hasActions } from "./scenarios.js";
import { SandboxPolicyHarness } from "./sandboxHarness.js";

const only = process.env["SLUICE_E2E_ONLY"];
/** Why a scenario does not run (false: it runs); the reporter prints the reason beside the skip. */
const skipReason = (name: string): string | false => (only !== undefined && !name.includes(only) ? `SLUICE_E2E_ONLY=${JSON.stringify(only)}: the name does not contain it` : false);

/** Which packet-filter dataplane the agents run (`--dataplane`); iptables unless given. */
export type SuiteDataplane = "iptables" | "nftables";

/**
 * Registers the suite (call at the top level of a test file); `extra` adds tests that run
 * on the same cluster after setup. `dataplane`: the same scenarios on the other dataplane.
 */
export function policySuite(tag: string, title: string, scenarios: readonly Scenario<string>[], extra?: (sb: Sandbox) => void, dataplane: SuiteDataplane = "iptables"): void {
  describe(title, () => {
    // The sandbox sets every node's FORWARD policy to DROP before its agent starts.
    const sb = testCluster(tag, { backend: "vxlan", nodes: 3, segments: 1, agentArgs: ["--dataplane", dataplane] });
    let harness: SandboxPolicyHarness | undefined;
    let lines: string[] = [];
    let r: PolicySuiteRunner | undefined;
    const runner = (): PolicySuiteRunner => {
      if (!r) throw new Error("the cluster did not come up");
      return r;
    };
    let dirty = false;

    before(async () => {
      harness = new SandboxPolicyHarness(sb);
      r = new PolicySuiteRunner(harness, { ...DEFAULT_RUNNER_OPTIONS, log: (m) => lines.push(m) });
      await r.setup();
      await r.settle();
      const clean = await r.checkClean();
      assert.equal(clean, "", `before any policy: ${clean}\n${lines.join("\n")}`);
    });

    after(async () => {
      await harness?.close();
    });

    extra?.(sb);

    for (const sc of scenarios) {
      test(sc.name, { skip: skipReason(sc.name), timeout: 120_000 }, async (t) => {
        lines = [];
        try {
          const undone = await runner().reset();
          if (undone.length) lines.push(`reset: ${undone.join(", ")}`);
          if (dirty) {
            await runner().settle();
            const clean = await runner().checkClean();
            assert.equal(clean, "", `after resetting a failed scenario: ${clean}`);
            dirty = false;
          } else if (undone.length && !hasActions(sc.steps[0] as (typeof sc.steps)[number])) {
            await runner().settle();
          }
          await runner().runScenario(sc);
        } catch (err) {
          dirty = true;
          throw err;
        } finally {
          for (const l of lines) t.diagnostic(l);
        }
      });
    }

    test("the clean state is all-connected after the last scenario", { skip: only !== undefined ? `SLUICE_E2E_ONLY=${JSON.stringify(only)}: not every scenario ran, so the clean state after all of them is not checked` : false }, async () => {
      await runner().reset();
      await runner().settle();
      assert.equal(await runner().checkClean(), "");
    });
  });
}
