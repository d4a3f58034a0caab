/**
 * Node cleanup (`sluicectl cleanup`): removes our nftables tables (`ip sluice`, `ip6 sluice`:
 * the nftables dataplane's), our iptables chains and jump rules, then our
 * ipsets (slc4-/slc6-/slct-; only once no rule of ours references them), every backend's devices
 * and the routes we installed. Other tools' rules, chains and routes are
 * left alone; the kernel objects are found by name/protocol, so it also works after a
 * crash.
 */
import { pino } from "pino";
import { ALL_KERNELS } from "../backends/kernels.js";
import { nftVersion } from "../dataplane/dataplaneChoice.js";
import { IpsetDriver } from "../dataplane/ipset.js";
import { NftablesDataplane } from "../dataplane/nftables.js";
import { IptablesDriver, binaries, detectMode } from "../dataplane/iptables.js";
import { Netlink, SLUICE_RT_PROTO } from "../dataplane/netlink.js";
import { formatCidr } from "../model/ip.js";

export async function cleanupNode(backend: "auto" | "nft" | "legacy"): Promise<string[]> {
  const log = pino({ level: "warn" }, pino.destination(2));
  const report: string[] = [];
  const mode = await detectMode(backend);
  if (await nftVersion()) {
    for (const family of [4, 6] as const) {
      const nft = new NftablesDataplane({ family, log });
      try {
        if (!(await nft.read())) continue;
        await nft.removeAll();
        report.push(`nftables: removed table ${family === 4 ? "ip" : "ip6"} sluice`);
      } catch (err) {
        report.push(`nftables (IPv${family}): ${(err as Error).message}`);
      }
    }
  }
  for (const family of [4, 6] as const) {
    const driver = new IptablesDriver(binaries(family, mode), log);
    try {
      const reports = await driver.removeAll(family, ["filter", "nat", "mangle", "raw"]);
      for (const r of reports) {
        if (r.wrote) report.push(`iptables (IPv${family}, ${r.table}): removed chains ${r.plan.removed.join(", ") || "-"}, jumps from ${r.plan.hooksFixed.join(", ") || "-"}`);
      }
    } catch (err) {
      report.push(`iptables (IPv${family}): ${(err as Error).message}`);
    }
  }
  // After the iptables rules: a set a rule still references cannot be destroyed.
  for (const family of [4, 6] as const) {
    try {
      const r = await new IpsetDriver({ family }, log).removeAll(4);
      if (r.plan.destroyed.length) report.push(`ipsets (IPv${family}): removed ${r.plan.destroyed.join(", ")}`);
    } catch (err) {
      report.push(`ipsets (IPv${family}): ${(err as Error).message}`);
    }
  }
  const nl = new Netlink();
  try {
    for (const family of [4, 6] as const) {
      for (const r of (await nl.routes(family)).filter((x) => x.protocol === SLUICE_RT_PROTO)) {
        report.push(await nl.deleteRoute(r).then(() => `route ${formatCidr(r.dst)} removed`, (err: Error) => `route ${formatCidr(r.dst)}: could not remove: ${err.message}`));
      }
    }
    for (const l of await nl.links()) {
      if (ALL_KERNELS.some((k) => k.ownsLink(l))) {
        report.push(await nl.deleteLink(l.index).then(() => `device ${l.name} removed`, (err: Error) => `device ${l.name}: could not remove: ${err.message}`));
      }
    }
  } finally {
    nl.close();
  }
  if (report.length === 0) report.push("nothing of Sluice's was left on this node");
  return report;
}
