/**
 * The files sluice-cni and the agent share on a node, under the plugin's data dir (the
 * netconf's `dataDir`, the agent's --cni-data-dir):
 *
 *   <dataDir>/_sluice/endpoints/<hostIface>.json   one WorkloadEndpointRecord per wired pod
 *                                                  (written by ADD, removed by DEL and GC)
 *   <dataDir>/_sluice/ready/<hostIface>            {"containerId": "...", "ips": [...]}: the
 *                                                  agent has applied the pod's policy chains
 *                                                  for this container's record, with these
 *                                                  addresses (written after each filter apply,
 *                                                  removed when the endpoint goes)
 *   <dataDir>/_sluice/policy-status.json            {"revision": "...", "appliedAt": "...",
 *                                                  "localEndpoints": N}: the datastore
 *                                                  revision of the policy data the agent's
 *                                                  last successful filter apply rendered
 *                                                  (rewritten after each one), so "has my
 *                                                  change reached this node?" has an answer
 *
 * "_sluice" cannot clash with a network's address store (<dataDir>/<network>): network
 * names start with a letter or digit. Every file appears whole or not at all (a temp file
 * starting with "." renamed into place); readers skip names starting with ".".
 */
import { join } from "node:path";
import { formatIp, parseIp } from "./ip.js";

export const LOCAL_STATE_DIR = "_sluice";

export const localEndpointsDir = (dataDir: string): string => join(dataDir, LOCAL_STATE_DIR, "endpoints");
export const localEndpointPath = (dataDir: string, hostIface: string): string => join(localEndpointsDir(dataDir), `${hostIface}.json`);
export const policyReadyDir = (dataDir: string): string => join(dataDir, LOCAL_STATE_DIR, "ready");
export const policyReadyPath = (dataDir: string, hostIface: string): string => join(policyReadyDir(dataDir), hostIface);
export const policyStatusPath = (dataDir: string): string => join(dataDir, LOCAL_STATE_DIR, "policy-status.json");

/**
 * What the agent has in force. `revision` is the datastore's (etcd's revision, or the
 * Kubernetes resourceVersion last seen) as of the snapshot the rules were rendered from:
 * in etcd mode every policy-relevant write up to it is programmed on this node.
 */
export interface PolicyStatus {
  revision: string;
  /** When the apply finished (ISO 8601). */
  appliedAt: string;
  /** This node's pods in that snapshot. */
  localEndpoints: number;
}

export const formatPolicyStatus = (s: PolicyStatus): string => JSON.stringify(s) + "\n";

/** A policy status file's content, or undefined when it is not one (torn writes cannot happen: it is renamed into place). */
export function parsePolicyStatus(text: string): PolicyStatus | undefined {
  try {
    const s = JSON.parse(text) as Partial<PolicyStatus> | null;
    if (typeof s?.revision !== "string" || typeof s.appliedAt !== "string" || typeof s.localEndpoints !== "number") return undefined;
    return { revision: s.revision, appliedAt: s.appliedAt, localEndpoints: s.localEndpoints };
  } catch {
    return undefined;
  }
}

/**
 * The content of a ready mark. The container ID is the one of the record the agent's
 * chains were rendered from: a mark left for an earlier container of the same pod (same
 * host interface, perhaps the same address) never counts for a later one.
 */
export interface PolicyReadyMark {
  containerId: string;
  ips: string[];
}

export const formatReadyMark = (containerId: string, ips: readonly string[]): string => JSON.stringify({ containerId, ips: [...ips].sort() } satisfies PolicyReadyMark) + "\n";

/** The container a ready mark names, or undefined when it names none (unreadable, or an older format). */
export function readyMarkContainer(text: string): string | undefined {
  try {
    const mark = JSON.parse(text) as Partial<PolicyReadyMark> | null;
    return typeof mark?.containerId === "string" && mark.containerId !== "" ? mark.containerId : undefined;
  } catch {
    return undefined;
  }
}

/** One spelling per address (an IPv6 address can be written several ways). */
function canonical(ip: string): string {
  try {
    return formatIp(parseIp(ip));
  } catch {
    return ip;
  }
}

/** Whether a ready mark's text says this container's chains are programmed with exactly these addresses (false for anything unreadable). */
export function readyMarkCovers(text: string, containerId: string, ips: readonly string[]): boolean {
  try {
    const mark = JSON.parse(text) as Partial<PolicyReadyMark>;
    if (mark.containerId !== containerId || !Array.isArray(mark.ips)) return false;
    const want = ips.map(canonical).sort();
    const got = mark.ips.map((ip) => canonical(String(ip))).sort();
    return got.length === want.length && got.every((ip, i) => ip === want[i]);
  } catch {
    return false;
  }
}
