/**
 * The policy model: everything the renderer and the evaluator (and so `sluicectl explain`)
 * need, built by one pure function from what a datastore holds. The agent (etcd or
 * Kubernetes datastore) and the CLI both go through buildPolicyModel, so what explain
 * says is what the agent programs.
 */
import type { KubeObject } from "../config/resourceKinds.js";
import type { NetworkPolicyObject } from "../config/k8sSchemas.js";
import type { NamespaceInfo, PodEndpoint } from "../model/endpoint.js";
import type { PolicyIR } from "./ir.js";
import { networkPolicyToIr } from "./networkPolicy.js";
import type { Labels } from "./selectors.js";

/** A node as policy sees it (ClusterNetworkPolicy `nodes` peers). */
export interface NodeInfo {
  name: string;
  labels: Labels;
  /** Its addresses (InternalIP / ExternalIP), plain text, either family. */
  addresses: string[];
}

/** A NetworkSet (namespace set) or GlobalNetworkSet (namespace undefined). */
export interface NetworkSetInfo {
  namespace: string | undefined;
  name: string;
  labels: Labels;
  /** Canonical CIDR text, either family. */
  nets: string[];
}

export interface PolicyModel {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  nodes: NodeInfo[];
  networkSets: NetworkSetInfo[];
  /** Every policy of every tier, in no particular order (comparePolicies orders them). */
  policies: PolicyIR[];
  /** Things an operator should know (e.g. two Admin policies with the same priority); logged by the agent, printed by explain. */
  warnings: string[];
}

/** What a datastore snapshot offers (PolicySnapshot has all of it). */
export interface PolicyModelInput {
  endpoints: PodEndpoint[];
  namespaces: NamespaceInfo[];
  /** NetworkPolicies, including fail-closed stand-ins for unreadable ones. */
  networkPolicies: NetworkPolicyObject[];
  /** Every registered kind's objects by kind name. */
  objects: Readonly<Record<string, readonly KubeObject[]>>;
}

/** Pure: datastore snapshot -> policy model. */
export function buildPolicyModel(input: PolicyModelInput): PolicyModel {
  return {
    endpoints: input.endpoints,
    namespaces: input.namespaces,
    nodes: [],
    networkSets: [],
    policies: input.networkPolicies.map(networkPolicyToIr),
    warnings: [],
  };
}
