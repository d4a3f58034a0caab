/**
 * What this kernel and these iptables binaries can do, probed once at start by trying it:
 * a rule is restored into a temporary chain of ours (`SLUICE-PROBE`, filter table) and
 * the chain is deleted again. A rule the kernel cannot take makes the whole restore fail,
 * so the renderer must leave out what the probe refuses, or one SCTP port in one policy
 * would stop every policy update.
 *
 * Two separate restores (add, then delete) are needed: iptables-legacy validates matches
 * only when the table is committed, so a rule added and deleted in one restore would
 * never reach the kernel. A probe that dies half-way leaves only owned names behind
 * (`SLUICE-PROBE`, `slct-probe4/6`), which the next apply removes.
 *
 * Findings on this machine (kernel 6.18, iptables 1.8.9, ipset 7.17; see the report in
 * test/integration/policyDataplane.test.ts): iptables-nft turns `-p sctp -m sctp --dport`
 * into a native nft payload match and iptables-legacy uses the built-in xt_sctp match;
 * both load and both count real SCTP packets, although the kernel has no SCTP protocol
 * (no SCTP sockets). `-m set --match-set` works with both (nft via nft_compat).
 */
import { existsSync, readFileSync } from "node:fs";
import type { Logger } from "pino";
import { run } from "./exec.js";
import { type IptablesBinaries, command } from "./iptables.js";

export const PROBE_CHAIN = "SLUICE-PROBE";

export interface DataplaneCapabilities {
  /** iptables can match SCTP ports (`-p sctp -m sctp --dport`): feed this to the renderer's `sctpSupported`. */
  sctpMatch: boolean;
  /** iptables can match ipsets (`-m set --match-set`). */
  setMatch: boolean;
  /**
   * The kernel has the SCTP protocol itself (SCTP sockets can be opened), as far as can be
   * told without opening one. Informational: matching forwarded SCTP does not need it, but a
   * test that wants to send SCTP does.
   */
  sctpProtocol: boolean;
  /** Why a probe said no (the tool's own error), for the log. */
  notes: string[];
}

async function restore(bin: IptablesBinaries, text: string): Promise<{ ok: boolean; err: string }> {
  const r = await run(...command(bin, bin.restore, ["-w", "5", "--noflush"]), text).catch((e: Error) => ({ code: -1, stderr: e.message, stdout: "" }));
  return { ok: r.code === 0, err: r.stderr.trim() };
}

const removeProbeChain = (bin: IptablesBinaries): Promise<{ ok: boolean; err: string }> =>
  // Declaring the chain creates or flushes it, so deleting it works whatever the first step left.
  restore(bin, `*filter\n:${PROBE_CHAIN} - [0:0]\n-X ${PROBE_CHAIN}\nCOMMIT\n`);

/** True when a rule with `match` (text after "-A SLUICE-PROBE ") can be loaded. Leaves nothing behind. */
export async function probeRule(bin: IptablesBinaries, match: string): Promise<{ ok: boolean; err: string }> {
  const result = await restore(bin, `*filter\n:${PROBE_CHAIN} - [0:0]\n-A ${PROBE_CHAIN} ${match} -j RETURN\nCOMMIT\n`);
  const gone = await removeProbeChain(bin);
  if (!gone.ok) throw new Error(`could not remove ${PROBE_CHAIN}: ${gone.err}`);
  return result;
}

export async function probeSctpMatch(bin: IptablesBinaries): Promise<{ ok: boolean; err: string }> {
  return probeRule(bin, "-p sctp -m sctp --dport 1");
}

/** Creates a throwaway owned set, references it from a probe rule, then removes both. */
export async function probeSetMatch(bin: IptablesBinaries, family: 4 | 6, ipset = "ipset"): Promise<{ ok: boolean; err: string }> {
  const set = `slct-probe${family}`;
  const ipsetCmd = (args: string[]): [string, string[]] => (bin.netns ? ["ip", ["netns", "exec", bin.netns, ipset, ...args]] : [ipset, args]);
  const created = await run(...ipsetCmd(["-exist", "create", set, "hash:ip", "family", family === 4 ? "inet" : "inet6"]));
  if (created.code !== 0) return { ok: false, err: `ipset create: ${created.stderr.trim()}` };
  try {
    return await probeRule(bin, `-m set --match-set ${set} src`);
  } finally {
    await run(...ipsetCmd(["destroy", set]));
  }
}

/** Whether the running kernel offers SCTP sockets (registered, built in, or a loadable module). */
export function kernelHasSctp(): boolean {
  try {
    if (/^SCTP\s/m.test(readFileSync("/proc/net/protocols", "utf8"))) return true;
  } catch {
    /* no procfs: fall through */
  }
  try {
    const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const dir = `/lib/modules/${release}`;
    for (const f of ["modules.builtin", "modules.dep"]) {
      const p = `${dir}/${f}`;
      if (existsSync(p) && /(^|\/)sctp\.ko/m.test(readFileSync(p, "utf8"))) return true;
    }
  } catch {
    /* unknown: say no */
  }
  return false;
}

/** Runs every probe once for one family and backend (the binaries decide which). */
export async function probeCapabilities(bin: IptablesBinaries, family: 4 | 6, log?: Logger): Promise<DataplaneCapabilities> {
  const notes: string[] = [];
  const sctp = await probeSctpMatch(bin);
  if (!sctp.ok) notes.push(`sctp match: ${sctp.err}`);
  const set = await probeSetMatch(bin, family);
  if (!set.ok) notes.push(`set match: ${set.err}`);
  const caps = { sctpMatch: sctp.ok, setMatch: set.ok, sctpProtocol: kernelHasSctp(), notes };
  log?.info({ family, mode: bin.mode, ...caps }, "dataplane capabilities");
  return caps;
}
