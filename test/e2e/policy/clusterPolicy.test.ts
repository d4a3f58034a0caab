/**
 * The cluster-wide tiers end to end: every scenario of clusterScenarios.ts on one
 * sandbox cluster (suite.ts: real agents, pods wired by sluice-cni, an external host on
 * the underlay), each step's probed matrix compared with its hand-written grid and with
 * `sluicectl explain`'s. And `sluicectl explain` as a user runs it, the real binary, on
 * the same sandbox.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { run } from "../../../src/dataplane/exec.js";
import type { Sandbox } from "../../../src/sandbox/cluster.js";
import { binPath } from "../../../src/sandbox/paths.js";
import { CLUSTER_SCENARIOS, MULTI_TENANT } from "./clusterScenarios.js";
import { policySuite } from "./suite.js";

interface ExplainJson {
  from: { name: string; address: string; pod: boolean };
  to: { name: string; address: string; pod: boolean };
  protocol: string;
  port: number;
  verdict: string;
  allowed: boolean;
  egress: { of: string | null; allowed: boolean; path: Array<{ tier: string; policy?: string; rule?: string; action: string; text: string }> };
  ingress: { of: string | null; allowed: boolean; path: Array<{ tier: string; policy?: string; rule?: string; action: string; text: string }> };
}

function cliTests(sb: Sandbox): void {
  const ctl = (args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> => run(process.execPath, [binPath("sluicectl"), ...args], input, 60_000);
  const sbArgs = (): string[] => ["--state-dir", sb.o.stateDir];

  test("sluicectl explain (the binary): a Deny across tenants names the Admin rule; -o json; --matrix agrees with sandbox matrix", async () => {
    const ok = async (args: string[], input?: string): Promise<string> => {
      const r = await ctl(args, input);
      assert.equal(r.code, 0, `sluicectl ${args.join(" ")}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    const labels: Array<[string, string]> = [["x", "tenant=red"], ["y", "tenant=blue"], ["z", "role=shared"]];
    try {
      for (const [ns, l] of labels) await ok(["sandbox", "label", "ns", ns, l, ...sbArgs()]);
      await ok(["apply", "-f", "-", ...sb.etcdFlags()], MULTI_TENANT);
      await new Promise((r) => setTimeout(r, 1000));

      const deny = await ctl(["explain", "x/a", "y/b", "--port", "80/TCP", ...sbArgs()]);
      assert.equal(deny.code, 1, `explain exits 1 on Deny\n${deny.stdout}${deny.stderr}`);
      assert.match(deny.stdout, /^x\/a \(10\.244\.\d+\.\d+\) -> y\/b \(10\.244\.\d+\.\d+\) 80\/TCP: Deny$/m);
      assert.match(deny.stdout, /^ingress of y\/b:\n {2}\[Admin\] tenant-blue deny-other-tenants: Deny$/m);
      assert.equal(deny.stderr, "", "no warnings");

      const j = JSON.parse((await ctl(["explain", "x/a", "y/b", "--port", "80/TCP", "-o", "json", ...sbArgs()])).stdout) as ExplainJson;
      assert.equal(j.verdict, "Deny");
      assert.equal(j.allowed, false);
      assert.deepEqual([j.from.name, j.to.name, j.protocol, j.port], ["x/a", "y/b", "TCP", 80]);
      assert.equal(j.egress.allowed, true);
      const last = j.ingress.path.at(-1);
      assert.deepEqual([last?.tier, last?.policy, last?.rule, last?.action], ["admin", "tenant-blue", "deny-other-tenants", "deny"]);

      // Pass to the shared namespace, then its NetworkPolicy allows red.
      const pass = await ctl(["explain", "x/a", "z/c", "--proto", "ICMP", ...sbArgs()]);
      assert.equal(pass.code, 0, pass.stdout + pass.stderr);
      assert.match(pass.stdout, /\[Admin\] shared-services to-namespace-policy: Pass\n.*\[NetworkPolicy\] z\/from-red/);

      // The matrix explain predicts is the one the probes see, in the same layout.
      const probed = JSON.parse(await ok(["sandbox", "matrix", "-n", "x", "-n", "y", "-o", "json", ...sbArgs()])) as { pods: string[]; matrix: unknown };
      const explained = JSON.parse(await ok(["explain", "--matrix", "-n", "x,y", "-o", "json", ...sbArgs()])) as { pods: string[]; matrix: unknown };
      assert.deepEqual(explained.pods, probed.pods);
      assert.deepEqual(explained.matrix, probed.matrix);
      const text = await ok(["explain", "--matrix", "-n", "x,y", ...sbArgs()]);
      assert.match(text, /^80\/TCP: rows connect to columns \('\.' allowed, 'X' denied\)\n\n {8}x\/a/);

      const bad = await ctl(["explain", "x/nope", "y/b", ...sbArgs()]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /no pod x\/nope .*pods of x: a, b, c/);
      const badPort = await ctl(["explain", "x/a", "y/b", "--port", "80/XTP", ...sbArgs()]);
      assert.equal(badPort.code, 2);
      assert.match(badPort.stderr, /--port: "80\/XTP"/);
    } finally {
      await ctl(["delete", "-f", "-", ...sb.etcdFlags(), "--ignore-not-found"], MULTI_TENANT);
      await ctl(["sandbox", "label", "ns", "x", "tenant-", ...sbArgs()]);
      await ctl(["sandbox", "label", "ns", "y", "tenant-", ...sbArgs()]);
      await ctl(["sandbox", "label", "ns", "z", "role-", ...sbArgs()]);
    }
  });
}

policySuite("cp", "ClusterNetworkPolicy, GlobalNetworkPolicy and NetworkSets end to end (sandbox: vxlan, 3 nodes, external host; x,y,z × a,b,c)", CLUSTER_SCENARIOS, cliTests);
