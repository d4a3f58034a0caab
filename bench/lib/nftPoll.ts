/**
 * The nftables dataplane's poller for policyScale, run inside the agent's namespace: the
 * same protocol as nsTools.ts pollInNs ("armed", then "done <epoch ns> <iterations>"), but
 * one process that asks the kernel over nfnetlink every ~2 ms, because `nft get element` and
 * `nft list chain` each take ~150 ms at 5,000 pods (nft loads every rule first) and would be
 * most of what they measure.
 *
 *   node nftPoll.js '<json condition>'
 *   {"set": "slc4-…", "has": "10.0.8.5", "want": true}     (ipset member syntax; intervals are searched)
 *   {"chain": "slc-tw-…", "exists": true}
 *   {"chain": "slc-tw-…", "targets": "slc-pi-a slc-pi-b"}  (its policy-chain jumps, in order)
 *   {"chain": "slc-tw-…", "names": "slc-pi-a", "want": false}
 */
import { NftNetlink } from "../../src/dataplane/nftNetlink.js";
import { parseIp } from "../../src/model/ip.js";

export type NftCondition =
  | { set: string; has: string; want: boolean }
  | { chain: string; exists: boolean }
  | { chain: string; targets: string }
  | { chain: string; names: string; want: boolean };

const nl = new NftNetlink();

/** `10.0.8.5` in elements such as `10.0.0.0/16`, `10.1.0.0-10.1.2.255`, `10.0.8.5`; `ip,tcp:80` as `ip . tcp . 80`. */
function contains(elements: readonly string[], member: string): boolean {
  const element = member.includes(",") ? member.replace(/,(\w+):(\d+)$/, " . $1 . $2") : member;
  if (elements.includes(element) || member.includes(",")) return elements.includes(element);
  const v = parseIp(member).value;
  return elements.some((e) => {
    if (e.includes("-")) {
      const [a, b] = e.split("-").map((x) => parseIp(x).value) as [bigint, bigint];
      return v >= a && v <= b;
    }
    if (!e.includes("/")) return false;
    const [net, len] = e.split("/");
    const bits = net?.includes(":") ? 128 : 32;
    const size = 1n << BigInt(bits - Number(len));
    const start = parseIp(net ?? "").value;
    return v >= start && v < start + size;
  });
}

async function holds(c: NftCondition): Promise<boolean> {
  if ("set" in c) {
    const elements = await nl.setElements(4, "sluice", c.set);
    return (elements !== undefined && contains(elements, c.has)) === c.want;
  }
  const rules = await nl.chainRules(4, "sluice", c.chain);
  if ("exists" in c) return (rules !== undefined) === c.exists;
  const policies = (rules?.targets ?? []).filter((t) => t.startsWith("slc-pi-") || t.startsWith("slc-po-"));
  if ("targets" in c) return policies.filter((t) => t.startsWith("slc-pi-")).join(" ") === c.targets;
  return policies.includes(c.names) === c.want;
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? "null") as NftCondition;
  if (await holds(c)) {
    process.stdout.write("already\n");
    process.exit(3);
  }
  process.stdout.write("armed\n");
  let n = 0;
  for (;;) {
    if (await holds(c)) break;
    n++;
    await new Promise((r) => setTimeout(r, 2));
  }
  const ns = BigInt(Date.now()) * 1_000_000n;
  process.stdout.write(`done ${ns} ${n}\n`);
  nl.close();
  process.exit(0);
}

void main();
