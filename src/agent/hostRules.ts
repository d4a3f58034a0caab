/** Applies the host rules (masquerade + forward) for each enabled family. */
import type { Logger } from "pino";
import type { AgentConfig } from "../config/agentConfig.js";
import type { NetworkConfig } from "../config/networkConfig.js";
import { IptablesDriver, binaries, detectMode, supportsRandomFully } from "../dataplane/iptables.js";
import type { Lease } from "../model/lease.js";
import { hostRuleset } from "../render/hostRules.js";

export class HostRules {
  private constructor(
    readonly driver4: IptablesDriver,
    readonly driver6: IptablesDriver,
    private readonly randomFully: boolean,
    private readonly cfg: AgentConfig,
  ) {}

  static async create(cfg: AgentConfig, log: Logger): Promise<HostRules> {
    const mode = await detectMode(cfg["iptables-backend"]);
    const d4 = new IptablesDriver(binaries(4, mode), log);
    const d6 = new IptablesDriver(binaries(6, mode), log);
    const randomFully = !cfg["ip-masq-fully-random-disable"] && (await supportsRandomFully(d4.bin));
    log.info({ mode, randomFully }, "iptables backend chosen");
    return new HostRules(d4, d6, randomFully, cfg);
  }

  async apply(network: NetworkConfig, lease: Lease): Promise<void> {
    const common = { ipMasq: this.cfg["ip-masq"], randomFully: this.randomFully, forwardRules: this.cfg["iptables-forward-rules"] };
    if (network.ipv4) await this.driver4.apply(hostRuleset({ family: 4, network: network.ipv4.network, subnet: lease.subnet, ...common }));
    if (network.ipv6) await this.driver6.apply(hostRuleset({ family: 6, network: network.ipv6.network, subnet: lease.subnet6, ...common }));
  }
}
