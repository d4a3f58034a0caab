/**
 * subnet.env, the file flannel writes for the CNI plugin and anything else that reads
 * flannel's output; and the Docker options mk-docker-opts.sh derives from it.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { randomBytes } from "node:crypto";
import { type Cidr, cidrHost, formatCidr, formatIp, parseCidr } from "../model/ip.js";

export interface SubnetEnv {
  network: Cidr | undefined;
  subnet: Cidr | undefined;
  ipv6Network: Cidr | undefined;
  ipv6Subnet: Cidr | undefined;
  mtu: number;
  ipMasq: boolean;
}

/** The subnet as flannel writes it: the first host address with the lease's prefix length. */
const firstHost = (c: Cidr): string => `${formatIp(cidrHost(c, 1n))}/${c.prefixLen}`;

export function renderSubnetEnv(e: SubnetEnv): string {
  const lines: string[] = [];
  if (e.network && e.subnet) lines.push(`FLANNEL_NETWORK=${formatCidr(e.network)}`, `FLANNEL_SUBNET=${firstHost(e.subnet)}`);
  if (e.ipv6Network && e.ipv6Subnet) lines.push(`FLANNEL_IPV6_NETWORK=${formatCidr(e.ipv6Network)}`, `FLANNEL_IPV6_SUBNET=${firstHost(e.ipv6Subnet)}`);
  lines.push(`FLANNEL_MTU=${e.mtu}`, `FLANNEL_IPMASQ=${e.ipMasq}`);
  return lines.join("\n") + "\n";
}

export function parseSubnetEnv(text: string): Partial<SubnetEnv> {
  const vars = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) vars.set(m[1] as string, (m[2] as string).trim().replace(/^"(.*)"$/, "$1"));
  }
  const cidrOf = (k: string): Cidr | undefined => {
    const v = vars.get(k);
    if (!v) return undefined;
    try {
      return parseCidr(v);
    } catch {
      return undefined;
    }
  };
  const mtu = Number(vars.get("FLANNEL_MTU"));
  const masq = vars.get("FLANNEL_IPMASQ");
  return {
    network: cidrOf("FLANNEL_NETWORK"),
    subnet: cidrOf("FLANNEL_SUBNET"),
    ipv6Network: cidrOf("FLANNEL_IPV6_NETWORK"),
    ipv6Subnet: cidrOf("FLANNEL_IPV6_SUBNET"),
    ...(Number.isInteger(mtu) && mtu > 0 ? { mtu } : {}),
    ...(masq === "true" || masq === "false" ? { ipMasq: masq === "true" } : {}),
  };
}

export async function readSubnetEnv(path: string): Promise<Partial<SubnetEnv> | undefined> {
  try {
    return parseSubnetEnv(await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}

/** Writes a file so that readers see either the old or the new content, never half. */
export async function writeFileAtomic(path: string, content: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // A name of its own per call: concurrent writers must not share (and rename away) one temp file.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

export interface DockerOptsOptions {
  /** Name of the combined variable (mk-docker-opts.sh -k). */
  combinedKey: string;
  individual: boolean;
  combined: boolean;
  /** Leave out --ip-masq (mk-docker-opts.sh -m). */
  omitIpMasq: boolean;
}

/**
 * mk-docker-opts.sh's output. Docker's --ip-masq is the inverse of FLANNEL_IPMASQ:
 * when flannel/Sluice masquerades, Docker must not.
 */
export function renderDockerOpts(e: SubnetEnv, o: DockerOptsOptions = { combinedKey: "DOCKER_OPTS", individual: true, combined: true, omitIpMasq: false }): string {
  if (!e.subnet) throw new Error("subnet.env has no FLANNEL_SUBNET");
  const opts: [string, string][] = [["DOCKER_OPT_BIP", `--bip=${firstHost(e.subnet)}`]];
  if (!o.omitIpMasq) opts.push(["DOCKER_OPT_IPMASQ", `--ip-masq=${!e.ipMasq}`]);
  opts.push(["DOCKER_OPT_MTU", `--mtu=${e.mtu}`]);
  const lines: string[] = [];
  if (o.individual) for (const [k, v] of opts) lines.push(`${k}="${v}"`);
  if (o.combined) lines.push(`${o.combinedKey}=" ${opts.map(([, v]) => v).join(" ")}"`);
  return lines.join("\n") + "\n";
}
