/** Rendered rules as iptables text, for tests that assert on the lines a node gets. */
import { formatRule } from "../../src/render/iptablesFormat.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import type { ChainSpec } from "../../src/render/ruleset.js";
import type { Rule } from "../../src/render/rules.js";

export const texts = (rules: readonly Rule[]): string[] => rules.map(formatRule);

const chainTexts = (chains: readonly ChainSpec[]): Array<{ name: string; rules: string[] }> => chains.map((c) => ({ name: c.name, rules: texts(c.rules) }));

/** A PolicyRender with every rule as the text the iptables dataplane writes. */
export function renderText(r: PolicyRender) {
  return {
    ...r,
    rawPreroutingRules: texts(r.rawPreroutingRules),
    rawChains: chainTexts(r.rawChains),
    forwardRules: texts(r.forwardRules),
    inputRules: texts(r.inputRules),
    outputRules: texts(r.outputRules),
    chains: chainTexts(r.chains),
  };
}
