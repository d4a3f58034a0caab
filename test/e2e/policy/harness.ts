/**
 * The adapter between the scenario runner and a real cluster. The runner only speaks
 * this interface; sandboxHarness.ts implements it with the sandbox, the CNI-wired pods,
 * the etcd resource store and the probe library.
 */
import type { Protocol } from "../../helpers/policyMatrix.js";
import type { NamedPort } from "./model.js";
import type { ObjectRef } from "./state.js";

export interface PodRequest {
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  /** Declared container ports; the pod serves TCP and UDP on every one of them. */
  ports: readonly NamedPort[];
}

export interface ProbeRequest {
  /** `<namespace>/<pod>` of the source pod. */
  from: string;
  toIp: string;
  /** 0 for ICMP (an echo request). */
  port: number;
  protocol: Protocol;
}

export interface ExplainRequest {
  /** Rows and columns of the matrix, `<namespace>/<pod>`. */
  pods: readonly string[];
  port: number;
  protocol: Protocol;
  /** Single connections besides the matrix: from a pod to an address (a pod's or not). */
  pairs: ReadonlyArray<{ from: string; toIp: string }>;
}

export interface NodeProbeRequest {
  node: string;
  toIp: string;
  port: number;
  protocol: Protocol;
}

export interface PolicyHarness {
  /** Node names as the cluster calls them: node-1, node-2, node-3. */
  readonly nodes: readonly string[];
  /** The cluster network, e.g. 10.244.0.0/16. */
  network(): string;
  /** The pod subnet a node leased, e.g. 10.244.7.0/24. */
  nodeSubnet(node: string): Promise<string>;

  /** Creates (or replaces) a Namespace object with exactly these labels. */
  createNamespace(name: string, labels: Record<string, string>): Promise<void>;
  /** Deletes the namespace, its pods (network namespaces included) and its policies. */
  deleteNamespace(name: string): Promise<void>;
  /**
   * Creates the Pod object, wires its network namespace on `node` through the CNI and
   * starts its TCP+UDP servers; resolves with the pod's address once it serves.
   */
  createPod(p: PodRequest): Promise<string>;
  deletePod(namespace: string, name: string): Promise<void>;
  /** Replaces the object's labels with exactly these. */
  setPodLabels(namespace: string, name: string, labels: Record<string, string>): Promise<void>;
  setNamespaceLabels(name: string, labels: Record<string, string>): Promise<void>;

  /**
   * Addresses outside the pod network: every node's (`node-1`, ...), each serving TCP and UDP
   * on 80 and 81 from the node's own namespace (a host-network server, started if need be),
   * and an external host's (`ext-1`, made if need be).
   */
  hostAddresses(): Promise<Record<string, string>>;

  /** `sluicectl apply -f` semantics: create or replace every document (any policy kind). */
  applyPolicyYaml(text: string): Promise<void>;
  deleteObject(ref: ObjectRef): Promise<void>;

  /**
   * What `sluicectl explain` says, from the datastore as it is now: the matrix over `pods`
   * (cells[from][to], true = allowed) and each pair's verdict. Absent when the harness
   * cannot read the datastore from the test process (the Kubernetes-mode sandbox keeps its
   * API server inside the underlay namespace); the runner then checks the probes only.
   */
  explain?(q: ExplainRequest): Promise<{ cells: boolean[][]; pairs: boolean[] }>;

  /**
   * Resolves once every node's agent has in force everything written to the datastore so
   * far (a marker write, then each node's policy status reaching its revision), or after
   * `deadlineMs` naming the nodes that had not. Absent where one revision does not order
   * every write (a Kubernetes API server: one watch per collection); the runner then
   * waits its settle time.
   */
  inForce?(deadlineMs: number): Promise<{ ms: number; late: string[] }>;

  /** Runs the probes concurrently; true = connected (a TCP echo or a UDP reply came back). */
  probe(requests: readonly ProbeRequest[], timeoutMs: number): Promise<boolean[]>;
  /** Probes from a node's own network namespace. */
  probeFromNode(requests: readonly NodeProbeRequest[], timeoutMs: number): Promise<boolean[]>;

  close(): Promise<void>;
}
