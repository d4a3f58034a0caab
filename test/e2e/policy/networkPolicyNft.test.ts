/**
 * The NetworkPolicy end-to-end suite (networkPolicy.test.ts's scenarios, unchanged) with
 * every agent on the native nftables dataplane: the same grids, the same explain matrices.
 * Each node also has iptables' FORWARD policy DROP, as Docker leaves it: the agents' own
 * table accepts nothing past it, so the iptables FORWARD accept rules must still be there,
 * and no policy chain or ipset of ours may be.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { nsExec } from "../../../src/sandbox/netns.js";
import { kubeProxyNftablesCoexistence } from "./coexistence.js";
import { SCENARIOS } from "./scenarios.js";
import { policySuite } from "./suite.js";

policySuite(
  "npn",
  "NetworkPolicy end to end on nftables (sandbox: vxlan, 3 nodes, iptables FORWARD DROP; x,y,z × a,b,c)",
  SCENARIOS,
  (sb) => {
    test("every node: policy in `ip sluice`; iptables holds only the FORWARD accept rules (under Docker's DROP policy) and no ipset of ours", async () => {
      for (const n of sb.nodes) {
        const table = await nsExec(n.ns, "nft", ["list", "table", "ip", "sluice"]);
        assert.match(table, /chain filter-forward \{[\s\S]*jump SLUICE-FORWARD/, n.name);
        assert.match(table, /chain slc-from-wl/, n.name);
        const ipt = await nsExec(n.ns, "iptables-save", ["-t", "filter"]);
        assert.match(ipt, /^:FORWARD DROP/m, n.name);
        assert.deepEqual(ipt.split("\n").filter((l) => /^-A SLUICE-FORWARD /.test(l)).map((l) => l.replace(/ -m comment --comment "?sluice:[0-9a-f]+"?/, "")), ["-A SLUICE-FORWARD -s 10.244.0.0/16 -j ACCEPT", "-A SLUICE-FORWARD -d 10.244.0.0/16 -j ACCEPT"], n.name);
        assert.doesNotMatch(ipt, /slc-/, `${n.name}: no policy chain in iptables`);
        assert.doesNotMatch(await nsExec(n.ns, "ipset", ["list", "-n"]), /^slc/m, `${n.name}: no ipset of ours`);
      }
    });

    kubeProxyNftablesCoexistence(sb);
  },
  "nftables",
);
