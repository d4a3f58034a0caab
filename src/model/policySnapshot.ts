/**
 * What a policy source (etcd's PolicySource, the Kubernetes KubePolicySource) hands the
 * policy model: the cluster's policy-relevant objects at one revision. Types only, in
 * model/ so that policy/ and render/ can read them without importing a datastore.
 */
import type { NetworkPolicyObject, PodObject } from "../config/k8sSchemas.js";
import type { KubeObject } from "../config/resourceKinds.js";
import type { NamespaceInfo, PodEndpoint, WorkloadEndpointRecord } from "./endpoint.js";

export interface PolicySnapshot {
  /** The etcd revision the snapshot reflects (of the last list or event applied). */
  revision: string;
  /** Namespace objects (always labelled with their name) plus implicit namespaces; sorted by name. */
  namespaces: NamespaceInfo[];
  /** Workload endpoints joined with their Pods (src/model/joinEndpoints.ts). */
  endpoints: PodEndpoint[];
  networkPolicies: NetworkPolicyObject[];
  pods: PodObject[];
  workloadEndpoints: WorkloadEndpointRecord[];
  /** Every registered kind's objects by kind name ("NetworkPolicy", "ClusterNetworkPolicy", ...), sorted by key; [] when none. */
  objects: Readonly<Record<string, readonly KubeObject[]>>;
  /**
   * Stored objects that fail validation and have no last good version, by kind and name:
   * the policy model puts a fail-closed stand-in in place of each policy among them.
   */
  refused?: RefusedObject[] | undefined;
}

export interface RefusedObject {
  kind: string;
  namespace?: string | undefined;
  name: string;
  reason: string;
}

/** A stored value a source refused, and whether its last good version stands in. */
export interface InvalidValue {
  key: string;
  reason: string;
  /** True when the snapshot holds the key's last good version instead. */
  keptLastGood: boolean;
}
