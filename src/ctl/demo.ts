/**
 * The README's main job (`./scripts/demo.sh` -> `sluicectl demo`), on top of the sandbox:
 * a three-node cluster in network namespaces with a real etcd and a real agent per node,
 * two namespaces, pods spread over the nodes and wired by the real CNI plugin, and a
 * connectivity matrix measured with real TCP connections between every pair of pods.
 *
 * Part 2 applies a NetworkPolicy with the real `sluicectl apply`, prints the matrix again
 * and what changed (demoPolicyPart below).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../dataplane/exec.js";
import { binPath } from "../sandbox/paths.js";
import { tmpdir } from "node:os";
import { SANDBOX_BACKENDS, SANDBOX_POLICY_READY_TIMEOUT_MS, Sandbox, type SandboxBackend, teardown } from "../sandbox/cluster.js";
import { nsExec } from "../sandbox/netns.js";
import { leaseSubnets, listLeases } from "../sandbox/nodes.js";
import { createNamespace, createPod, type SandboxPod, podId, podObjects } from "../sandbox/pods.js";
import { type MatrixResult, type ProbeOptions, type Reachability, diffReachability, formatMatrix, probeMatrix } from "../sandbox/probe.js";
import type { Io } from "./commands.js";
import { recordSandboxContext } from "./sandbox.js";

export const DEMO_PREFIX = "sluice-demo";
export const DEMO_STATE = join(tmpdir(), "sluice-demo");

/** What the demo has built, handed to each part. */
export interface DemoContext {
  sb: Sandbox;
  io: Io;
  /** "ns/name" of every pod, in matrix order. */
  pods: string[];
  /** The probe every matrix of the demo uses (TCP 80). */
  probe: ProbeOptions;
  /** The matrix measured before any policy. */
  baseline: MatrixResult;
  /** Measures and prints a matrix; with `compareTo`, also prints which pairs changed. */
  showMatrix(title: string, compareTo?: Reachability): Promise<MatrixResult>;
}

/** The pods: namespace, name, node. Every node hosts pods of both namespaces. */
const LAYOUT: ReadonlyArray<{ ns: string; name: string; node: number }> = [
  { ns: "x", name: "a", node: 1 },
  { ns: "x", name: "b", node: 2 },
  { ns: "x", name: "c", node: 3 },
  { ns: "y", name: "a", node: 2 },
  { ns: "y", name: "b", node: 3 },
  { ns: "y", name: "c", node: 1 },
];

export interface DemoOptions {
  backend: string;
  keep: boolean;
  /** Tests run the demo under their own names; users get DEMO_PREFIX / DEMO_STATE. */
  prefix?: string;
  stateDir?: string;
}

export async function runDemo(o: DemoOptions, io: Io): Promise<number> {
  if (!(SANDBOX_BACKENDS as readonly string[]).includes(o.backend)) {
    io.err(`--backend: "${o.backend}" must be one of ${SANDBOX_BACKENDS.join(", ")}\n`);
    return 2;
  }
  const prefix = o.prefix ?? DEMO_PREFIX;
  const stateDir = o.stateDir ?? DEMO_STATE;
  await teardown(prefix, stateDir); // a crashed or kept earlier run must not get in the way
  const sb = new Sandbox({ prefix, stateDir, nodes: 3, backend: o.backend as SandboxBackend, segments: 1, detached: o.keep, policyReadyTimeoutMs: SANDBOX_POLICY_READY_TIMEOUT_MS });
  const cleanup = async (): Promise<void> => {
    if (!o.keep) await teardown(prefix, stateDir);
  };
  const onSignal = (): void => void teardown(prefix, stateDir).then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    io.out(`== Building a 3-node cluster in network namespaces (backend ${o.backend}, FORWARD policy DROP as Docker sets it)\n`);
    const progress = (line: string): void => io.out(`   ${line}\n`);
    await sb.up(progress);
    await sb.waitAllReady(30_000, progress);
    await createNamespace(sb, "default");

    io.out(`\n== Subnet leases in etcd\n`);
    const leases = (await listLeases(sb)).sort((a, b) => (a.attrs.NodeName ?? "").localeCompare(b.attrs.NodeName ?? ""));
    for (const l of leases) io.out(`  ${leaseSubnets(l).padEnd(16)} ${(l.attrs.NodeName ?? "-").padEnd(8)} ${l.attrs.PublicIP.padEnd(13)} ${l.attrs.BackendType}\n`);
    for (const n of sb.nodes) {
      const routes = (await nsExec(n.ns, "ip", ["route", "show", "proto", "77"])).trim();
      io.out(`\n== ${n.name} (${n.address}): routes its agent programmed to the other nodes' pod subnets\n${indent(routes)}\n`);
    }

    io.out(`\n== Namespaces x and y; pods wired by the real CNI plugin (sluice-cni ADD in the node's namespace)\n`);
    await createNamespace(sb, "x", { team: "x" });
    await createNamespace(sb, "y", { team: "y" });
    const made: SandboxPod[] = [];
    for (const p of LAYOUT) made.push(await createPod(sb, { namespace: p.ns, name: p.name, node: p.node, labels: { pod: p.name } }));
    const labels = new Map((await podObjects(sb)).map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.metadata.labels ?? {}]));
    for (const p of made) {
      const l = Object.entries(labels.get(podId(p)) ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
      io.out(`  ${podId(p).padEnd(5)} on ${p.node}  ${p.ips.join(",").padEnd(13)} host veth ${p.hostIface}  labels ${l}  serving 80,81 TCP+UDP\n`);
    }

    const pods = made.map(podId);
    const probe: ProbeOptions = { port: 80, protocol: "TCP", timeoutMs: 1000 };
    const showMatrix = async (title: string, compareTo?: Reachability): Promise<MatrixResult> => {
      const m = await probeMatrix(sb, pods, probe);
      io.out(`\n== ${title}\n   real TCP connections to port 80, rows connect to columns ('.' connected, 'X' blocked)\n\n`);
      io.out(indent(formatMatrix(m).trimEnd()) + "\n");
      const ok = m.results.filter((r) => r.connected).length;
      io.out(`\n   ${ok}/${m.results.length} pairs connected (${m.ms} ms for the whole matrix)\n`);
      if (compareTo) {
        const changed = diffReachability(compareTo, m.reachability).map((d) => d.replace("expected", "was").replace(", got", ", now"));
        io.out(changed.length ? `   changed:\n${changed.map((c) => `     ${c}`).join("\n")}\n` : "   nothing changed\n");
      }
      return m;
    };
    const baseline = await showMatrix("Connectivity matrix (same node and across nodes)");
    const allConnected = baseline.results.every((r) => r.connected);

    const policyOk = await demoPolicyPart({ sb, io, pods, probe, baseline, showMatrix });

    if (o.keep) {
      io.out(
        [
          "",
          "The cluster is still running. Explore it:",
          `  export SLUICE_STATE_DIR=${stateDir}     # or pass --state-dir ${stateDir} to each command`,
          "  node dist/bin/sluicectl.js sandbox status",
          "  node dist/bin/sluicectl.js sandbox matrix --port 81/UDP",
          "  node dist/bin/sluicectl.js sandbox probe x/b y/b --port 80/TCP",
          `  # ${recordSandboxContext(sb)}`,
          "  node dist/bin/sluicectl.js get netpol -A",
          "  node dist/bin/sluicectl.js delete netpol y-admits-own-and-x-a -n y",
          "  node dist/bin/sluicectl.js sandbox exec x/a -- ip route",
          "  node dist/bin/sluicectl.js sandbox exec node-1 -- iptables-save",
          `  less ${stateDir}/node-1/agent.log`,
          "Tear it down with:",
          "  node dist/bin/sluicectl.js sandbox down      (with SLUICE_STATE_DIR set as above; or: sluicectl demo-down)",
          "",
        ].join("\n"),
      );
    } else {
      io.out(`\nTearing down (run with --keep to explore the cluster first).\n`);
    }
    return allConnected && policyOk ? 0 : 1;
  } finally {
    await cleanup();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
}

/** The policy of the demo's second part: namespace y admits its own pods and x/a only. */
export const DEMO_POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: y-admits-own-and-x-a
  namespace: y
spec:
  podSelector: {}            # every pod in namespace y is isolated for ingress
  ingress:
  - from:
    - podSelector: {}        # pods of namespace y itself
    - namespaceSelector:     # and, from namespace x, only pods labelled pod=a
        matchLabels: {team: x}
      podSelector:
        matchLabels: {pod: a}
`;

/**
 * Part 2: applies DEMO_POLICY with the real `sluicectl apply`, prints the matrix again and
 * what changed. Returns whether exactly the expected pairs changed: x/b and x/c lose
 * their way into namespace y, everything else stays as it was.
 */
export async function demoPolicyPart(ctx: DemoContext): Promise<boolean> {
  const { sb, io } = ctx;
  const file = join(sb.o.stateDir, "demo-policy.yaml");
  writeFileSync(file, DEMO_POLICY);
  io.out(`\n== Applying a NetworkPolicy with sluicectl apply -f ${file}\n\n${indent(DEMO_POLICY.trimEnd())}\n\n`);
  const r = await run(process.execPath, [binPath("sluicectl"), "apply", "-f", file, ...sb.etcdFlags()]);
  io.out(indent((r.stdout + r.stderr).trimEnd()) + "\n");
  if (r.code !== 0) return false;
  // Every agent watches the datastore; the change is programmed in well under a second.
  await new Promise((res) => setTimeout(res, 1000));
  const after = await ctx.showMatrix("After the policy (every agent programmed it from its etcd watch)", ctx.baseline.reachability);
  const blockedNow = (from: string, to: string): boolean => to.startsWith("y/") && (from === "x/b" || from === "x/c");
  const expected = Object.fromEntries(ctx.pods.map((from) => [from, Object.fromEntries(ctx.pods.map((to) => [to, ctx.baseline.reachability[from]?.[to] === true && !blockedNow(from, to)]))]));
  const diff = diffReachability(expected, after.reachability);
  io.out(diff.length === 0 ? "\n   As the policy says: x/b and x/c no longer reach namespace y; x/a and y's own pods still do; x is untouched.\n" : `\n   UNEXPECTED:\n${diff.map((d) => `     ${d}`).join("\n")}\n`);
  return diff.length === 0;
}

const indent = (s: string): string =>
  s
    .split("\n")
    .map((l) => `   ${l}`.trimEnd())
    .join("\n");
