/**
 * Applies this node's iptables rules and ipsets for each enabled family: the nat table
 * (masquerade) on its own, and the filter table (the FORWARD fix plus, when the policy
 * engine is on, every policy chain and set) as one desired table, so neither can remove
 * the other's chains. The raw table (the policy's anti-spoofing check) goes with the
 * filter table, in the same apply.
 */
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import type { NetworkConfig } from "../config/networkConfig.js";
import { type DataplaneCapabilities, probeCapabilities } from "../dataplane/capabilities.js";
import { type IptablesMode, detectMode, supportsRandomFully } from "../dataplane/iptables.js";
import { PolicyDataplane } from "../dataplane/policyDataplane.js";
import type { RulesDataplane } from "../dataplane/rulesDataplane.js";
import type { Family } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import { type TableChoice, type UnderlayTrust, hostRuleset, underlayIpsets } from "../render/hostRules.js";
import type { PolicyRender } from "../render/policyContract.js";
import { withKubeIpvs } from "../render/kubeIpvs.js";

/**
 * What the policy engine contributes: a render per family, or "not-ready" while it has
 * not yet seen the datastore once. Not ready means the filter table is left exactly as it
 * is, so a restarting agent never opens what its previous run had closed. `kubeIpvs`:
 * kube-proxy runs in IPVS mode here (kube-ipvs0 exists, `services` its addresses), so
 * Service traffic's INPUT -> OUTPUT path gets the endpoint chains too (src/render/kubeIpvs.ts).
 */
export type PolicyInput = { enabled: false } | { enabled: true; renders: ReadonlyMap<Family, PolicyRender> | undefined; kubeIpvs?: { services: readonly string[] } | undefined };

/** `resync`: a full check (start-up, the periodic resync, a retry) that reads the kernel; otherwise the dataplane may trust what it last wrote. */
export interface HostRulesApplyOptions {
  resync: boolean;
}

export class HostRules {
  /** Use create(); public so that ordering tests can hand it fake dataplanes. */
  constructor(
    readonly dataplanes: ReadonlyMap<Family, RulesDataplane>,
    readonly capabilities: DataplaneCapabilities,
    readonly mode: IptablesMode,
    private readonly randomFully: boolean,
    private readonly cfg: AgentConfig,
  ) {}

  static async create(cfg: AgentConfig, log: Logger): Promise<HostRules> {
    const mode = await detectMode(cfg["iptables-backend"]);
    const d4 = new PolicyDataplane({ family: 4, mode, log });
    const d6 = new PolicyDataplane({ family: 6, mode, log });
    const randomFully = !cfg["ip-masq-fully-random-disable"] && (await supportsRandomFully(d4.iptables.bin));
    const capabilities = await probeCapabilities(d4.iptables.bin, 4, log);
    if (cfg["enable-policy"] && !capabilities.setMatch) {
      // Every policy apply would fail and pods would run unpoliced: refuse to start instead.
      throw new Error(`iptables (${mode}) cannot match ipsets (-m set; kernel module xt_set) so policy cannot be enforced: ${capabilities.notes.join("; ")}. Load xt_set, or run with --enable-policy=false`);
    }
    log.info({ mode, randomFully, sctpMatch: capabilities.sctpMatch, setMatch: capabilities.setMatch }, "iptables backend chosen");
    return new HostRules(
      new Map([
        [4, d4],
        [6, d6],
      ]),
      capabilities,
      mode,
      randomFully,
      cfg,
    );
  }

  /** Total kernel writes so far (iptables-restore and ipset restore); a no-op apply adds none. */
  get writes(): number {
    return [...this.dataplanes.values()].reduce((n, d) => n + d.writes, 0);
  }

  /**
   * Reconciles the chosen tables; returns whether the filter table was applied. The filter
   * table is left as it is until both the policy (when enabled) and the peers (`underlay`,
   * per family) are known: its underlay rules trust only known peers, so applying it
   * without them would drop or open what a previous run had right.
   */
  async apply(network: NetworkConfig, lease: Lease, policy: PolicyInput, tables: readonly TableChoice[] = ["nat", "filter"], underlay?: ReadonlyMap<Family, UnderlayTrust>, opts: HostRulesApplyOptions = { resync: true }): Promise<{ filterApplied: boolean }> {
    const read = { trustCache: !opts.resync };
    const common = { ipMasq: this.cfg["ip-masq"], randomFully: this.randomFully, forwardRules: this.cfg["iptables-forward-rules"] };
    const filterReady = (!policy.enabled || policy.renders !== undefined) && underlay !== undefined;
    const chosen = tables.filter((t) => t !== "filter" || filterReady);
    const families = [
      { family: 4 as const, pool: network.ipv4, subnet: lease.subnet },
      { family: 6 as const, pool: network.ipv6, subnet: lease.subnet6 },
    ];
    for (const f of families) {
      if (!f.pool) continue;
      const dp = this.dataplanes.get(f.family) as RulesDataplane;
      const rendered = policy.enabled ? policy.renders?.get(f.family) : undefined;
      const ipvs = policy.enabled ? policy.kubeIpvs : undefined;
      const render = rendered && ipvs ? withKubeIpvs(rendered, f.family, ipvs.services.filter((a) => a.includes(":") === (f.family === 6))) : rendered;
      const input = { family: f.family, network: f.pool.network, subnet: f.subnet, ...common, underlay: underlay?.get(f.family) };
      const spec = hostRuleset(input, render, chosen);
      if (chosen.includes("filter")) await dp.apply(f.family, spec, [...underlayIpsets(input), ...(render?.ipsets ?? [])], read);
      else await dp.applyTables(spec, read);
    }
    return { filterApplied: chosen.includes("filter") };
  }
}
