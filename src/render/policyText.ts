/**
 * Pure text forms of rendered policy, for golden files and for humans (`sluicectl`
 * explain-style output): the iptables-restore input a fresh node would get, and the ipsets
 * as `ipset save` prints them (without hashsize/maxelem/initval, which are the kernel's).
 */
import type { IpsetSpec } from "./ipsetSpec.js";
import type { PolicyRender } from "./policyContract.js";
import { type RenderedTable, type TableSpec, renderTable } from "./ruleset.js";

export const POLICY_TOP_CHAINS = { forward: "SLUICE-FORWARD", input: "SLUICE-INPUT", output: "SLUICE-OUTPUT" } as const;
export const POLICY_RAW_CHAIN = "SLUICE-PREROUTING";

/** `create <name> <type> family inet|inet6` then `add <name> <member>` lines, in spec order. */
export function formatIpsets(sets: readonly IpsetSpec[]): string {
  const lines: string[] = [];
  for (const s of sets) {
    lines.push(`create ${s.name} ${s.type} family ${s.family === 4 ? "inet" : "inet6"}`);
    for (const m of s.members) lines.push(`add ${s.name} ${m}`);
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/**
 * The restore input for a table onto a node that has none of it: the same text as the
 * planner's `planTable(table, undefined).restore` (src/dataplane/iptablesPlan.ts), kept
 * here because render code must not import the dataplane.
 */
export function formatFreshRestore(t: RenderedTable): string {
  const lines = [`*${t.table}`];
  for (const c of t.chains) lines.push(`:${c.name} - [0:0]`);
  for (const c of t.chains) for (const r of c.rules) lines.push(`-A ${c.name} ${r.body}`);
  for (const builtin of [...new Set(t.hooks.map((h) => h.builtin))].sort()) {
    for (const h of t.hooks.filter((x) => x.builtin === builtin).reverse()) lines.push(`-I ${builtin} 1 ${h.rule.body}`);
  }
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** The policy output alone as a filter table: the three top-level chains, then the generated ones. */
export function policyTableSpec(r: PolicyRender): TableSpec {
  return {
    table: "filter",
    chains: [
      { name: POLICY_TOP_CHAINS.forward, rules: r.forwardRules },
      { name: POLICY_TOP_CHAINS.input, rules: r.inputRules },
      { name: POLICY_TOP_CHAINS.output, rules: r.outputRules },
      ...r.chains,
    ],
    hooks: [],
  };
}

/** The policy output's raw table: SLUICE-PREROUTING (hooked first in PREROUTING) and the anti-spoofing chains. */
export function policyRawTableSpec(r: PolicyRender): TableSpec {
  return { table: "raw", chains: [{ name: POLICY_RAW_CHAIN, rules: r.rawPreroutingRules }, ...r.rawChains], hooks: [{ builtin: "PREROUTING", target: POLICY_RAW_CHAIN }] };
}

/** Restore text of both tables (raw, then filter) + ipset text of a render, as the golden files hold them. */
export function formatPolicyRender(r: PolicyRender): string {
  return `${formatFreshRestore(renderTable(policyRawTableSpec(r)))}${formatFreshRestore(renderTable(policyTableSpec(r)))}${formatIpsets(r.ipsets)}`;
}
