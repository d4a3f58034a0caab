/**
 * The cluster-wide tiers end to end (clusterScenarios.ts, unchanged) with every agent on
 * the native nftables dataplane: Admin and Baseline tiers, GlobalNetworkPolicy, NetworkSets,
 * the own-node and external-host cases, each step's probed matrix against its grid and
 * against `sluicectl explain`'s.
 */
import { CLUSTER_SCENARIOS } from "./clusterScenarios.js";
import { policySuite } from "./suite.js";

policySuite("cpn", "ClusterNetworkPolicy, GlobalNetworkPolicy and NetworkSets end to end on nftables (sandbox: vxlan, 3 nodes, external host; x,y,z × a,b,c)", CLUSTER_SCENARIOS, undefined, "nftables");
