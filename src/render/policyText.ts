/**
 * Pure text forms of rendered policy, for golden files and for humans (`sluicectl`
 * explain-style output): the iptables-restore input a fresh node would get, and the ipsets
 * as `ipset save` prints them (without hashsize/maxelem/initval, which are the kernel's).
 * The syntax itself is iptablesFormat.ts's.
 */
import { formatFreshRestore, formatIpsets, formatTable } from "./iptablesFormat.js";
import { formatNftTable, nftSet, nftTable } from "./nftFormat.js";
import type { PolicyRender } from "./policyContract.js";
import { type TableSpec, renderTable } from "./ruleset.js";

export { formatFreshRestore, formatIpsets };

export const POLICY_TOP_CHAINS = { forward: "SLUICE-FORWARD", input: "SLUICE-INPUT", output: "SLUICE-OUTPUT" } as const;
export const POLICY_RAW_CHAIN = "SLUICE-PREROUTING";

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
  const restore = (t: TableSpec): string => formatFreshRestore(renderTable(formatTable(t)));
  return `${restore(policyRawTableSpec(r))}${restore(policyTableSpec(r))}${formatIpsets(r.ipsets)}`;
}

/** The same render as the nftables dataplane writes it onto a fresh node: one `nft -f` transaction (sets, chains, rules). */
export function formatPolicyRenderNft(r: PolicyRender, family: 4 | 6): string {
  return formatNftTable(nftTable({ family, tables: [policyRawTableSpec(r), policyTableSpec(r)] }, r.ipsets.map(nftSet)));
}
