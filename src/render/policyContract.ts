/**
 * The contract between the agent and the pure policy renderer: a snapshot of what the
 * agent knows in, chains of structured rules (rules.ts) and ipsets out. The agent merges the output with the host rules
 * (src/render/hostRules.ts) into one filter table per family, because the iptables planner
 * removes any owned chain that the desired table does not list; the raw table (the
 * anti-spoofing check, which must run before conntrack) is the policy engine's alone.
 */
import type { Family } from "../model/ip.js";
import type { NamespaceInfo, PodEndpoint } from "../model/endpoint.js";
import type { NetworkPolicyObject } from "../config/k8sSchemas.js";
import type { ChainSpec } from "./ruleset.js";
import type { Rule } from "./rules.js";
import type { IpsetSpec } from "./ipsetSpec.js";

export interface PolicyRenderInput {
  family: Family;
  /** This node's name: endpoints with `node === nodeName` are local and get chains. */
  nodeName: string;
  /** Every pod endpoint cluster-wide (peers are matched across nodes). */
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  networkPolicies: NetworkPolicyObject[];
  /** False when the kernel cannot match SCTP: SCTP rules are left out (they never open anything else). */
  sctpSupported: boolean;
}

export interface PolicyRender {
  /** raw table, SLUICE-PREROUTING: local pods' packets to the source check, before conntrack sees them. */
  rawPreroutingRules: Rule[];
  /** The raw table's generated chains (`slc-antispoof…`). */
  rawChains: ChainSpec[];
  /** Rules for SLUICE-FORWARD, placed before the cluster-network accept rules. */
  forwardRules: Rule[];
  /** SLUICE-INPUT: pod -> this host (pod egress policy applies). */
  inputRules: Rule[];
  /** SLUICE-OUTPUT: this host -> local pods (always allowed). */
  outputRules: Rule[];
  /** Every generated chain (`slc-…`): dispatch, per-endpoint, per-policy. */
  chains: ChainSpec[];
  ipsets: IpsetSpec[];
  /**
   * The local endpoints that have chains (slc-fw-/slc-tw-<hostIface>), with the addresses of
   * this family their egress chain lets them send from: what the IPVS path (kubeIpvs.ts)
   * dispatches on, where no rule can see the interface a packet came in on.
   */
  localEndpoints: Array<{ hostIface: string; addresses: string[] }>;
}
