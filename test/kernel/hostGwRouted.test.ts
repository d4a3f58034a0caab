import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { SandboxNode } from "../../src/sandbox/cluster.js";
import { eventually } from "../../src/sandbox/endpoints.js";
import { nsExec } from "../../src/sandbox/netns.js";
import { testCluster } from "../helpers/cluster.js";

describe("host-gw on a routed underlay", () => {
  // node-1 and node-3 share segment 1; node-2 sits on segment 2 behind the router.
  const sb = testCluster("hr", { backend: "host-gw", nodes: 3, segments: 2 });

  test("routes to on-link peers only, and says clearly why the other is refused", async () => {
    const n1 = sb.nodes[0] as SandboxNode;
    const log = (): string => readFileSync(join(n1.stateDir, "agent.log"), "utf8");
    assert.ok(await eventually(async () => log().includes("is not on-link"), 10_000), "the refusal is logged");
    const line = log().split("\n").find((l) => l.includes("is not on-link")) ?? "";
    assert.match(line, /host-gw needs every peer on the same L2 segment, but 10\.250\.2\.12 \(node-2\) is not on-link; use vxlan with DirectRouting/);
    const routes = await nsExec(n1.ns, "ip", ["route", "show", "proto", "77"]);
    assert.match(routes, /via 10\.250\.1\.13 dev eth0/);
    assert.doesNotMatch(routes, /10\.250\.2\.12/);
  });
});
