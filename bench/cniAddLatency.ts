/**
 * How long the real, bundled sluice-cni takes per ADD and DEL, called as a runtime calls
 * it: a throwaway node namespace with a subnet.env, 100 pods ADDed one after another,
 * then DELed; once with the netconf the manifests and the sandbox write (either datastore:
 * the plugin talks to none), once with a conflist written for the plugin that wrote to
 * etcd itself (etcdEndpoints and etcdPrefix, now ignored; the endpoint named there does
 * not exist, so any dial would fail the ADD). Baselines measured in the same run (bare
 * `node -e 0`, the plugin's VERSION, one `ip -batch`, one `nsenter ... ip -batch`, and
 * loading etcd3, which etcd-mode ADDs paid before) turn the figures into ratios that
 * travel between machines.
 *
 * The timing loop runs inside the node namespace (this file re-executes itself there), so
 * each sample is exactly one plugin process, as a runtime would spawn it.
 * Prints figures; asserts nothing. Run: npm run build && node build/bench/cniAddLatency.js [pods]
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binPath } from "../src/sandbox/paths.js";
import { addNetns, delNetns, ip, listNetns } from "../src/sandbox/netns.js";

interface Plan {
  nodeNs: string;
  pods: string[];
  subnetFile: string;
  dataDir: string;
  /** Where the old conflist's etcdEndpoints points: nothing listens there. */
  deadEtcd: string;
  baselineRuns: number;
}

interface Series {
  name: string;
  samples: number[];
}

const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;

function stats(xs: number[]): { n: number; p50: number; p99: number; max: number; mean: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN, mean: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}

/** Inside the node namespace: every timed call is one process, spawned as a runtime would. */
function inner(plan: Plan): Series[] {
  const plugin = binPath("sluice-cni");
  const time = (cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string): number => {
    const t = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { env, input, encoding: "utf8" });
    const took = ms(t);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stdout} ${r.stderr}`);
    return took;
  };
  const series: Series[] = [];
  const repeat = (name: string, n: number, fn: () => number): void => {
    fn(); // warm the page cache
    series.push({ name, samples: Array.from({ length: n }, fn) });
  };
  const base = { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" };
  repeat("baseline: node -e 0", plan.baselineRuns, () => time(process.execPath, ["-e", "0"], base, ""));
  repeat("baseline: sluice-cni VERSION", plan.baselineRuns, () => time(process.execPath, [plugin], { ...base, CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.1.0"}'));
  repeat("baseline: ip -batch (empty)", plan.baselineRuns, () => time("ip", ["-batch", "-"], base, "\n"));
  repeat("baseline: nsenter --net ip -batch", plan.baselineRuns, () => time("nsenter", [`--net=/var/run/netns/${plan.pods[0]}`, "ip", "-batch", "-"], base, "\n"));
  // What etcd-mode ADDs paid before the plugin stopped talking to etcd: loading etcd3 (gRPC, protobuf definitions).
  repeat("baseline: node -e require(etcd3)", Math.ceil(plan.baselineRuns / 3), () => time(process.execPath, ["-e", `require(${JSON.stringify(require.resolve("etcd3"))})`], base, ""));

  for (const mode of ["plain", "old-etcd-conflist"]) {
    const conf = JSON.stringify({
      cniVersion: "1.1.0",
      name: `bench-${mode}`,
      type: "sluice",
      subnetFile: plan.subnetFile,
      dataDir: plan.dataDir,
      nodeName: "bench-node",
      ...(mode === "plain" ? {} : { etcdEndpoints: [plan.deadEtcd], etcdPrefix: "/sluice-bench" }),
    });
    const envOf = (cmd: string, i: number): NodeJS.ProcessEnv => ({
      ...base,
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: `bench-${mode}-${i}`,
      CNI_NETNS: `/var/run/netns/${plan.pods[i]}`,
      CNI_IFNAME: "eth0",
      CNI_ARGS: `K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-${i}`,
      CNI_PATH: "/usr/lib/cni",
    });
    const adds = plan.pods.map((_, i) => time(process.execPath, [plugin], envOf("ADD", i), conf));
    const dels = plan.pods.map((_, i) => time(process.execPath, [plugin], envOf("DEL", i), conf));
    series.push({ name: `ADD (${mode})`, samples: adds }, { name: `DEL (${mode})`, samples: dels });
  }
  return series;
}

async function outer(podCount: number): Promise<void> {
  const prefix = `sltbench${process.pid.toString(36)}-`;
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-cni-"));
  try {
    const nodeNs = `${prefix}node`;
    await addNetns(nodeNs);
    await ip("netns", "exec", nodeNs, "sysctl", "-qw", "net.ipv4.ip_forward=1");
    const subnetFile = join(dir, "subnet.env");
    writeFileSync(subnetFile, "FLANNEL_NETWORK=10.250.0.0/16\nFLANNEL_SUBNET=10.250.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    const pods: string[] = [];
    for (let i = 0; i < podCount; i++) {
      pods.push(`${prefix}p${i}`);
      await addNetns(`${prefix}p${i}`);
    }
    const plan: Plan = { nodeNs, pods, subnetFile, dataDir: join(dir, "ipam"), deadEtcd: `unix://${join(dir, "no-etcd.sock")}`, baselineRuns: 30 };
    const r = spawnSync("ip", ["netns", "exec", nodeNs, process.execPath, __filename, "--inner", JSON.stringify(plan)], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`inner run failed: ${r.stderr}`);
    const series = JSON.parse(r.stdout) as Series[];
    const nodeBase = stats(series.find((s) => s.name === "baseline: node -e 0")?.samples ?? []).p50;
    const cpus = (await import("node:os")).cpus();
    console.log(`sluice-cni ADD/DEL latency: ${podCount} pods, sequential, one plugin process per call (${cpus.length} x ${cpus[0]?.model ?? "cpu"}, node ${process.version})`);
    console.log(`${"series".padEnd(36)} ${"n".padStart(4)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"mean ms".padStart(8)} ${"p50 / node -e 0".padStart(16)}`);
    for (const s of series) {
      const st = stats(s.samples);
      console.log(`${s.name.padEnd(36)} ${String(st.n).padStart(4)} ${st.p50.toFixed(1).padStart(8)} ${st.p99.toFixed(1).padStart(8)} ${st.max.toFixed(1).padStart(8)} ${st.mean.toFixed(1).padStart(8)} ${(st.p50 / nodeBase).toFixed(2).padStart(16)}`);
    }
    const plainAdd = stats(series.find((s) => s.name === "ADD (plain)")?.samples ?? []).p50;
    const version = stats(series.find((s) => s.name === "baseline: sluice-cni VERSION")?.samples ?? []).p50;
    console.log(`ADD (plain) p50 spends ${(version - nodeBase).toFixed(1)} ms loading the plugin over bare node and ${(plainAdd - version).toFixed(1)} ms doing the ADD itself.`);
  } finally {
    for (const ns of (await listNetns()).filter((n) => n.startsWith(prefix))) await delNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--inner") {
  process.stdout.write(JSON.stringify(inner(JSON.parse(process.argv[3] as string) as Plan)));
} else {
  const pods = Number(process.argv[2] ?? 100);
  outer(Number.isInteger(pods) && pods > 0 ? pods : 100).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
