/**
 * The README's main job: a three-node cluster in network namespaces with a real etcd
 * and a real agent per node; it prints the leases, each node's routes and a
 * connectivity matrix measured with real TCP connections, then tears everything down.
 */
import { join } from "node:path";
import { tmpdir } from "node:os";
import { Sandbox, type SandboxBackend, teardown } from "../sandbox/cluster.js";
import { type Endpoint, addEndpoint, startEchoServer, tcpProbe, eventually } from "../sandbox/endpoints.js";
import { nsExec } from "../sandbox/netns.js";
import { binPath } from "../sandbox/paths.js";
import type { Io } from "./commands.js";

export const DEMO_PREFIX = "sluice-demo";
export const DEMO_STATE = join(tmpdir(), "sluice-demo");

export async function runDemo(o: { backend: string; keep: boolean }, io: Io): Promise<number> {
  if (!["vxlan", "host-gw", "vxlan-direct"].includes(o.backend)) {
    io.err(`--backend: "${o.backend}" must be vxlan, host-gw or vxlan-direct\n`);
    return 2;
  }
  await teardown(DEMO_PREFIX, DEMO_STATE); // a crashed earlier run must not get in the way
  const sb = new Sandbox({ prefix: DEMO_PREFIX, stateDir: DEMO_STATE, nodes: 3, backend: o.backend as SandboxBackend, segments: 1, detached: o.keep });
  const cleanup = async (): Promise<void> => {
    if (!o.keep) await sb.down();
  };
  const onSignal = (): void => void cleanup().then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    io.out(`== Building a 3-node cluster in network namespaces (backend ${o.backend}, FORWARD policy DROP as Docker sets it)\n`);
    await sb.up();
    await sb.waitAllReady();
    const { stdout } = await import("../dataplane/exec.js").then((m) => m.run(process.execPath, [binPath("sluicectl"), "leases", "--etcd-endpoints", sb.etcdEndpoint]));
    io.out(`\n== Subnet leases in etcd\n${stdout}`);
    for (const n of sb.nodes) {
      const routes = (await nsExec(n.ns, "ip", ["route", "show", "proto", "77"])).trim();
      io.out(`\n== ${n.name} (${n.address}) routes programmed by its agent\n${routes}\n`);
    }
    const eps: Endpoint[] = [];
    for (const n of sb.nodes) {
      for (const name of ["a", "b"]) {
        const ep = await addEndpoint(sb, n, name, name === "a" ? 2 : 3);
        startEchoServer(ep, 8080, n.stateDir);
        eps.push(ep);
      }
    }
    io.out(`\n== Workloads: ${eps.map((e) => `${e.node.name}/${e.name}=${e.ip}`).join("  ")}\n`);
    io.out("\n== TCP connectivity matrix (real connections to port 8080; rows connect to columns)\n");
    const label = (e: Endpoint): string => `${e.node.name}/${e.name}`;
    io.out("".padEnd(10) + eps.map((e) => label(e).padStart(10)).join("") + "\n");
    let ok = 0;
    let total = 0;
    for (const from of eps) {
      let row = label(from).padEnd(10);
      for (const to of eps) {
        const connected = await eventually(() => tcpProbe(from, to.ip, 8080, 1500), 5000);
        total++;
        if (connected) ok++;
        row += (connected ? "ok" : "BLOCKED").padStart(10);
      }
      io.out(row + "\n");
    }
    io.out(`\n${ok}/${total} pairs connected.\n`);
    if (o.keep) {
      io.out(`\nThe cluster is still running. Explore it, e.g.:\n  ip netns exec ${sb.nodes[0]?.ns} ip route\n  ip netns exec ${sb.nodes[0]?.ns} iptables-save\n  cat ${DEMO_STATE}/node-1/agent.log\nTear it down with: sluicectl demo-down\n`);
    } else {
      io.out(`\nTearing down (run with --keep to explore the cluster first).\n`);
    }
    return ok === total ? 0 : 1;
  } finally {
    await cleanup();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }
}
