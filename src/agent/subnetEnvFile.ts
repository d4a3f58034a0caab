/**
 * The subnet.env concern: the file the CNI plugin reads to wire a pod (and, with
 * --docker-opts-file, Docker's options), rewritten only when its text changes. When it may
 * first be written is the apply's decision (src/agent/dataplaneApply.ts).
 */
import type { Logger } from "pino";
import { formatCidr } from "../model/ip.js";
import type { Lease } from "../model/lease.js";
import type { AgentRuntime } from "./runtime.js";
import { renderDockerOpts, renderSubnetEnv, writeFileAtomic, type SubnetEnv } from "./subnetEnv.js";

export class SubnetEnvFile {
  /** Written at least once by this process. */
  written = false;
  private last = "";

  constructor(
    private readonly rt: Pick<AgentRuntime, "network" | "paths" | "cfg">,
    private readonly log: Logger,
  ) {}

  async write(lease: Lease, mtu: number): Promise<void> {
    const { network, paths } = this.rt;
    const env: SubnetEnv = { network: network.ipv4?.network, subnet: lease.subnet, ipv6Network: network.ipv6?.network, ipv6Subnet: lease.subnet6, mtu, ipMasq: this.rt.cfg["ip-masq"] };
    const text = renderSubnetEnv(env);
    if (text === this.last && this.written) return;
    await writeFileAtomic(paths.subnetFile, text);
    if (paths.dockerOptsFile) await writeFileAtomic(paths.dockerOptsFile, renderDockerOpts(env));
    this.last = text;
    this.written = true;
    this.log.info({ path: paths.subnetFile, subnet: env.subnet && formatCidr(env.subnet), mtu: env.mtu }, "wrote subnet.env");
  }
}
