/**
 * Runs in the kernel-feature VM (test/vm/kernelVm.test.ts boots it): the cases that need a
 * whole sandbox cluster and a kernel feature this host lacks, on one cluster, because a
 * cluster costs minutes on the emulated CPU (agents, etcd and every pod server start slowly).
 * Each case has its own namespaces, pods and policies (sctpPolicy.ts, then ipvsPolicy.ts,
 * which leaves kube-proxy's IPVS objects on node 1 behind it: it comes last). The backend is
 * wireguard, so the kernel's WireGuard carries all of it (kernelWireguard.ts checks the
 * devices after the SCTP cases have sent traffic through them).
 */
import { describe } from "node:test";
import { testCluster } from "../../helpers/cluster.js";
import { ipvsPolicyTests } from "./ipvsPolicy.js";
import { kernelWireguardTests } from "./kernelWireguard.js";
import { sctpPolicyTests } from "./sctpPolicy.js";

describe("a two-node sandbox cluster in the VM", () => {
  const sb = testCluster("vsbx", { backend: "wireguard", nodes: 2, segments: 1, readyTimeoutMs: 240_000 });
  sctpPolicyTests(sb);
  kernelWireguardTests(sb);
  ipvsPolicyTests(sb);
});
