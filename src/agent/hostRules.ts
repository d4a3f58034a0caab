/**
 * Applies this node's packet-filter rules and sets for each enabled family: the nat table
 * (masquerade) on its own, and the filter table (the FORWARD fix plus, when the policy
 * engine is on, every policy chain and set) as one desired table, so neither can remove
 * the other's chains. The raw table (the policy's anti-spoofing check) goes with the
 * filter table, in the same apply.
 *
 * Two dataplanes take the same rulesets (src/dataplane/dataplaneChoice.ts picks one):
 * iptables + ipset, or native nftables (our own `ip`/`ip6 sluice` table). Each apply
 * writes the chosen one first and then brings the other to what this mode leaves of it,
 * so switching a node's mode by restarting leaves nothing of the old one and never a
 * moment with neither enforcing (both at once only ever drop more):
 * - nftables mode: iptables keeps only the FORWARD accept rules (Docker's DROP policy
 *   would drop what our table accepts: an accept ends one base chain, a drop is final),
 *   and loses every policy chain, jump and ipset of ours;
 * - iptables mode: a previous nftables run's table goes, once per table kind.
 */
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import type { NetworkConfig } from "../config/networkConfig.js";
import { type DataplaneCapabilities, kernelHasSctp, probeCapabilities } from "../dataplane/capabilities.js";
import { type DataplaneChoice, chooseDataplane, nftVersion, probeNftables } from "../dataplane/dataplaneChoice.js";
import { run } from "../dataplane/exec.js";
import { type IptablesMode, detectMode, supportsRandomFully } from "../dataplane/iptables.js";
import { NftGenerations } from "../dataplane/nftNetlink.js";
import { NftablesDataplane } from "../dataplane/nftables.js";
import { PolicyDataplane } from "../dataplane/policyDataplane.js";
import type { RulesDataplane } from "../dataplane/rulesDataplane.js";
import type { Family } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import { type HostRulesInput, type TableChoice, type UnderlayTrust, hostRuleset, underlayIpsets } from "../render/hostRules.js";
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

/** The dataplane this mode does not use, and what an apply leaves of it. */
export interface OtherDataplane {
  kind: DataplaneChoice["kind"];
  dataplanes: ReadonlyMap<Family, RulesDataplane>;
}

export class HostRules {
  /** Table kinds (per family) whose rules of the other dataplane are known to be gone (iptables mode: the nft table's). */
  private readonly otherCleared = new Set<string>();

  /** Use create(); public so that ordering tests can hand it fake dataplanes. */
  constructor(
    readonly dataplanes: ReadonlyMap<Family, RulesDataplane>,
    readonly capabilities: DataplaneCapabilities,
    readonly mode: IptablesMode,
    private readonly randomFully: boolean,
    private readonly cfg: AgentConfig,
    readonly dataplane: DataplaneChoice = { kind: "iptables", reason: "given" },
    private readonly other?: OtherDataplane,
    private readonly log?: Logger,
  ) {}

  static async create(cfg: AgentConfig, log: Logger, enableNFTables = false): Promise<HostRules> {
    const choice = await chooseDataplane(cfg.dataplane, enableNFTables);
    const mode = await detectMode(cfg["iptables-backend"]);
    const ip4 = new PolicyDataplane({ family: 4, mode, log });
    const ip6 = new PolicyDataplane({ family: 6, mode, log });
    const iptables = new Map<Family, RulesDataplane>([
      [4, ip4],
      [6, ip6],
    ]);
    if (choice.kind === "nftables") {
      const generations = new NftGenerations();
      const nft = new Map<Family, RulesDataplane>([
        [4, new NftablesDataplane({ family: 4, log, generations })],
        [6, new NftablesDataplane({ family: 6, log, generations })],
      ]);
      const { sctpMatch } = await probeNftables();
      // iptables stays only for the FORWARD accept rules, and only where it exists.
      const iptablesHere = (await run(ip4.iptables.bin.restore, ["--version"]).then((r) => r.code === 0, () => false));
      const capabilities: DataplaneCapabilities = { sctpMatch, setMatch: true, sctpProtocol: kernelHasSctp(), notes: [] };
      const randomFully = !cfg["ip-masq-fully-random-disable"];
      log.info({ dataplane: "nftables", reason: choice.reason, randomFully, sctpMatch, iptables: iptablesHere ? mode : "absent" }, "dataplane chosen");
      return new HostRules(nft, capabilities, mode, randomFully, cfg, choice, iptablesHere ? { kind: "iptables", dataplanes: iptables } : undefined, log);
    }
    const randomFully = !cfg["ip-masq-fully-random-disable"] && (await supportsRandomFully(ip4.iptables.bin));
    const capabilities = await probeCapabilities(ip4.iptables.bin, 4, log);
    if (cfg["enable-policy"] && !capabilities.setMatch) {
      // Every policy apply would fail and pods would run unpoliced: refuse to start instead.
      throw new Error(`iptables (${mode}) cannot match ipsets (-m set; kernel module xt_set) so policy cannot be enforced: ${capabilities.notes.join("; ")}. Load xt_set, or run with --enable-policy=false`);
    }
    log.info({ dataplane: "iptables", reason: choice.reason, mode, randomFully, sctpMatch: capabilities.sctpMatch, setMatch: capabilities.setMatch }, "dataplane chosen");
    const other: OtherDataplane | undefined = (await nftVersion()) !== undefined
      ? {
          kind: "nftables",
          dataplanes: new Map<Family, RulesDataplane>([
            [4, new NftablesDataplane({ family: 4, log })],
            [6, new NftablesDataplane({ family: 6, log })],
          ]),
        }
      : undefined;
    return new HostRules(iptables, capabilities, mode, randomFully, cfg, choice, other, log);
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
      await this.settleOther(f.family, input, chosen, read);
    }
    return { filterApplied: chosen.includes("filter") };
  }

  /** After ours is written: the other dataplane brought to what this mode leaves of it (see the header). */
  private async settleOther(family: Family, input: HostRulesInput, chosen: readonly TableChoice[], read: { trustCache: boolean }): Promise<void> {
    const other = this.other?.dataplanes.get(family);
    if (!other || !this.other) return;
    if (this.other.kind === "iptables") {
      // Only the FORWARD accept rules: no masquerade, no underlay or policy chains, no ipsets.
      const spec = hostRuleset({ ...input, ipMasq: false, underlay: undefined }, undefined, chosen);
      if (chosen.includes("filter")) await other.apply(family, spec, [], read);
      else await other.applyTables(spec, read);
      return;
    }
    const kinds = chosen.flatMap((t): Array<"raw" | "filter" | "nat"> => (t === "filter" ? ["raw", "filter"] : ["nat"])).filter((t) => !this.otherCleared.has(`${family}/${t}`));
    if (!kinds.length) return;
    await other.removeAll(kinds);
    for (const t of kinds) this.otherCleared.add(`${family}/${t}`);
    this.log?.debug({ family, tables: kinds }, "no nftables rules of a previous run left");
  }
}
