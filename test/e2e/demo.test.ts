/** The README's main command: `sluicectl demo` (here under test names, with --keep, then `sandbox down`). */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDemo } from "../../src/ctl/demo.js";
import { runSandbox } from "../../src/ctl/sandbox.js";
import { Sandbox, teardown } from "../../src/sandbox/cluster.js";
import { listPods, podId } from "../../src/sandbox/pods.js";
import { leftovers } from "../helpers/cluster.js";
import { uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("dm");
const stateDir = join(tmpdir(), prefix);
after(() => teardown(prefix, stateDir));

test("demo --keep: 3 nodes, 2 namespaces, 6 CNI-wired pods, a full TCP matrix; the cluster stays for exploring until sandbox down", async () => {
  let out = "";
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (out += s) };
  const code = await runDemo({ backend: "vxlan", keep: true, prefix, stateDir }, io);
  assert.equal(code, 0, out);
  assert.match(out, /== Subnet leases in etcd/);
  assert.match(out, /36\/36 pairs connected/);
  assert.match(out, /sandbox status/);
  assert.match(out, /sandbox down/);
  assert.match(out, new RegExp(`current context: sandbox-${prefix} `), "sluicectl's datastore verbs find the kept cluster");
  const sb = Sandbox.load(stateDir);
  assert.deepEqual(sb.nodes.map((n) => n.name), ["node-1", "node-2", "node-3"]);
  const pods = listPods(sb);
  assert.deepEqual(pods.map(podId), ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c"]);
  assert.deepEqual([...new Set(pods.map((p) => p.node))].sort(), ["node-1", "node-2", "node-3"], "pods spread over every node");
  assert.equal(await runSandbox({ "state-dir": stateDir }, ["down"], io), 0);
  assert.deepEqual(await leftovers(prefix, stateDir), []);
});
