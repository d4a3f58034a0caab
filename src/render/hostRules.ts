/**
 * flannel's host rules, as our chains: masquerading of pod traffic that leaves the
 * cluster network (never pod-to-pod), and the FORWARD accept rules that Docker >= 1.13
 * made necessary. The forward chain is the last stop in SLUICE-FORWARD: policy
 * dispatch (added by the policy engine) runs before it, so it never bypasses policy.
 */
import { type Cidr, formatCidr } from "../model/ip.js";
import type { PolicyRender } from "./policyContract.js";
import type { ChainSpec, HookSpec, RulesetSpec, TableSpec } from "./ruleset.js";

export const CHAIN_POSTROUTING = "SLUICE-POSTROUTING";
export const CHAIN_FORWARD = "SLUICE-FORWARD";
export const CHAIN_INPUT = "SLUICE-INPUT";
export const CHAIN_OUTPUT = "SLUICE-OUTPUT";
/** kube-proxy marks traffic it wants masqueraded itself; we leave it alone. */
export const KUBE_PROXY_MASQ_MARK = "0x4000/0x4000";

export interface HostRulesInput {
  family: 4 | 6;
  /** The cluster network of this family. */
  network: Cidr;
  /** This node's subnet of this family (undefined until leased). */
  subnet: Cidr | undefined;
  ipMasq: boolean;
  randomFully: boolean;
  forwardRules: boolean;
  /** Rules from the policy engine that run before the cluster accept rules. */
  forwardPolicyRules?: string[];
}

/** Which tables a ruleset covers: the agent applies nat and filter on separate schedules. */
export type TableChoice = "nat" | "filter";

export function masqueradeRules(i: HostRulesInput): string[] {
  if (!i.subnet) return [];
  const net = formatCidr(i.network);
  const sub = formatCidr(i.subnet);
  const multicast = i.family === 4 ? "224.0.0.0/4" : "ff00::/8";
  const masq = i.randomFully ? "-j MASQUERADE --random-fully" : "-j MASQUERADE";
  return [
    `-m mark --mark ${KUBE_PROXY_MASQ_MARK} -j RETURN`,
    // pod-to-pod inside the cluster network keeps its source address
    `-s ${sub} -d ${net} -j RETURN`,
    `-s ${net} -d ${sub} -j RETURN`,
    // traffic from outside to local pods (e.g. via a NodePort) is not ours to rewrite
    `! -s ${net} -d ${sub} -j RETURN`,
    // pods talking to the world
    `-s ${net} ! -d ${multicast} ${masq}`,
    // the host (or anything outside the network) talking to remote pods
    `! -s ${net} -d ${net} ${masq}`,
  ];
}

export function forwardRules(i: HostRulesInput): string[] {
  const rules = [...(i.forwardPolicyRules ?? [])];
  if (i.forwardRules) {
    const net = formatCidr(i.network);
    rules.push(`-s ${net} -j ACCEPT`, `-d ${net} -j ACCEPT`);
  }
  return rules;
}

/**
 * The whole ruleset of one family: flannel's host rules, and, when the policy engine has
 * rendered, its chains merged into the same filter table. They must be one table spec,
 * because the planner removes every owned chain the desired table does not list.
 */
export function hostRuleset(i: HostRulesInput, policy?: PolicyRender, only?: readonly TableChoice[]): RulesetSpec {
  const tables: TableSpec[] = [];
  const want = (t: TableChoice): boolean => only === undefined || only.includes(t);
  if (want("nat")) {
    const masq = i.ipMasq ? masqueradeRules(i) : [];
    tables.push(table("nat", masq.length ? [{ name: CHAIN_POSTROUTING, rules: masq }] : [], masq.length ? [{ builtin: "POSTROUTING", target: CHAIN_POSTROUTING }] : []));
  }
  if (want("filter")) {
    const chains: ChainSpec[] = [];
    const hooks: HookSpec[] = [];
    const add = (builtin: string, name: string, rules: string[]): void => {
      if (rules.length === 0) return;
      chains.push({ name, rules });
      hooks.push({ builtin, target: name });
    };
    add("FORWARD", CHAIN_FORWARD, forwardRules({ ...i, forwardPolicyRules: [...(policy?.forwardRules ?? []), ...(i.forwardPolicyRules ?? [])] }));
    add("INPUT", CHAIN_INPUT, policy?.inputRules ?? []);
    add("OUTPUT", CHAIN_OUTPUT, policy?.outputRules ?? []);
    chains.push(...(policy?.chains ?? []));
    tables.push(table("filter", chains, hooks));
  }
  return { family: i.family, tables };
}

function table(name: TableSpec["table"], chains: ChainSpec[], hooks: HookSpec[]): TableSpec {
  return { table: name, chains, hooks };
}
