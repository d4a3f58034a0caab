/**
 * Which packet-filter dataplane a node runs (`--dataplane iptables|nftables|auto`), and
 * what native nftables can do here.
 *
 * `auto` follows the node, as Calico does: nftables when kube-proxy runs in nftables mode
 * (its `ip kube-proxy` or `ip6 kube-proxy` table has chains) or when net-conf.json says
 * `"EnableNFTables": true` (flannel's key, which flannel users already set); iptables
 * otherwise, and always when there is no `nft` binary to run.
 */
import { run } from "./exec.js";

export type DataplaneKind = "iptables" | "nftables";

export interface DataplaneChoice {
  kind: DataplaneKind;
  /** Why, in words, for the start-up log. */
  reason: string;
}

export interface DataplaneProbe {
  netns?: string | undefined;
  /** The nft binary (tests point it elsewhere to act out a node without one). */
  nft?: string;
}

function nft(p: DataplaneProbe, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = p.nft ?? "nft";
  return (p.netns ? run("ip", ["netns", "exec", p.netns, bin, ...args], input) : run(bin, args, input)).catch((err: Error) => ({ code: -1, stdout: "", stderr: err.message }));
}

/** `nft --version`'s version, or undefined when nft cannot run. */
export async function nftVersion(p: DataplaneProbe = {}): Promise<string | undefined> {
  const r = await nft(p, ["--version"]);
  return r.code === 0 ? (/v(\d+\.\d+(\.\d+)?)/.exec(r.stdout)?.[1] ?? r.stdout.trim()) : undefined;
}

/** Whether kube-proxy's nftables table holds chains on this node (it runs in nftables mode). */
export async function kubeProxyUsesNftables(p: DataplaneProbe = {}): Promise<boolean> {
  for (const family of ["ip", "ip6"]) {
    const r = await nft(p, ["list", "table", family, "kube-proxy"]);
    if (r.code === 0 && /^\s*chain\s/m.test(r.stdout)) return true;
  }
  return false;
}

export async function chooseDataplane(setting: "auto" | DataplaneKind, enableNFTables: boolean, p: DataplaneProbe = {}): Promise<DataplaneChoice> {
  const version = await nftVersion(p);
  if (setting === "nftables") {
    if (!version) throw new Error(`--dataplane nftables: the nft binary cannot run here (${(await nft(p, ["--version"])).stderr.trim() || "no output"}); install nftables (Debian: apt-get install nftables)`);
    return { kind: "nftables", reason: "--dataplane nftables" };
  }
  if (setting === "iptables") return { kind: "iptables", reason: "--dataplane iptables" };
  if (!version) return { kind: "iptables", reason: "--dataplane auto: no nft binary here" };
  if (enableNFTables) return { kind: "nftables", reason: '--dataplane auto: net-conf.json has "EnableNFTables": true' };
  if (await kubeProxyUsesNftables(p)) return { kind: "nftables", reason: "--dataplane auto: kube-proxy runs in nftables mode (its kube-proxy table has chains)" };
  return { kind: "iptables", reason: "--dataplane auto: kube-proxy is not in nftables mode and EnableNFTables is not set" };
}

/**
 * What the nft dataplane relies on, checked by the kernel without changing anything
 * (`nft --check`): named and interval sets, the address . protocol . port concatenation,
 * SCTP port matches, nat masquerade. Throws naming what failed.
 */
export async function probeNftables(p: DataplaneProbe = {}): Promise<{ sctpMatch: boolean }> {
  const base = [
    "add table ip sluice-probe",
    "add set ip sluice-probe n { type ipv4_addr; flags interval; }",
    "add set ip sluice-probe p { type ipv4_addr . inet_proto . inet_service; }",
    "add chain ip sluice-probe c",
    "add rule ip sluice-probe c ip saddr @n ip daddr . meta l4proto . th dport @p accept",
    "add chain ip sluice-probe nat { type nat hook postrouting priority 100; policy accept; }",
    "add rule ip sluice-probe nat masquerade",
    "",
  ].join("\n");
  const r = await nft(p, ["--check", "-f", "-"], base);
  if (r.code !== 0) throw new Error(`nftables cannot hold our table here: ${r.stderr.trim().split("\n")[0] ?? "nft failed"}`);
  const sctp = await nft(p, ["--check", "-f", "-"], "add table ip sluice-probe\nadd chain ip sluice-probe c\nadd rule ip sluice-probe c sctp dport 1 accept\n");
  return { sctpMatch: sctp.code === 0 };
}
