/**
 * A small iptables + ipset simulator for the policy renderer's output, and the cross-check
 * of simulated chains against the reference evaluator (src/policy/evaluate.ts). That
 * cross-check finds renderer bugs only: renderer and evaluator share the IR translation and
 * its helpers. test/unit/policyOracle.test.ts compares the same simulated chains with the
 * independent oracle of the e2e suites (test/e2e/policy/oracle.ts).
 *
 * Each node runs the raw table's SLUICE-PREROUTING (the anti-spoofing check, before
 * conntrack) on every packet it receives, then the filter table's chains.
 *
 * It runs our rule vocabulary exactly as netfilter does (jump/goto/RETURN stack, MARK
 * --set-xmark, LOG, ipset hash:ip / hash:net with nomatch / hash:ip,port, tcp/udp/sctp
 * ports, icmp/icmp6 types) and throws on any token it does not know, so the rendered text
 * is also checked for staying inside it. Rate limits always pass. simulateIpvs adds the
 * netfilter path of kube-proxy's IPVS mode (INPUT, IPVS, OUTPUT) and crossCheckIpvs its
 * cross-check against the evaluator (test/unit/policyIpvs.test.ts).
 */
import assert from "node:assert/strict";
import type { PodEndpoint } from "../../src/model/endpoint.js";
import { type Cidr, type Family, cidrContainsIp, formatIp, parseCidr, parseIp } from "../../src/model/ip.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import { POLICY_RAW_CHAIN, policyRawTableSpec, policyTableSpec } from "../../src/render/policyText.js";
import { type RenderedTable, renderTable } from "../../src/render/ruleset.js";
import { formatTable } from "../../src/render/iptablesFormat.js";
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import type { Connection, ExplainStep, PolicyEvaluator } from "../../src/policy/evaluate.js";
import { withKubeIpvs } from "../../src/render/kubeIpvs.js";

export interface Packet {
  inIface?: string;
  outIface?: string;
  src: string;
  dst: string;
  proto: "tcp" | "udp" | "sctp" | "icmp" | "ipv6-icmp";
  dport: number;
  sport?: number;
  icmpType?: number;
  icmpCode?: number;
  ctstate: "NEW" | "ESTABLISHED" | "RELATED" | "INVALID";
  mark: number;
  /** LOG prefixes, in the order the packet met them. */
  log?: string[];
}

export type SimVerdict = "ACCEPT" | "DROP" | "RETURN";

/** A rule compiled once: its matches, and what it does when they all hold. */
interface CompiledRule {
  text: string;
  matches: ((p: Packet) => boolean)[];
  action: { kind: "verdict"; verdict: SimVerdict } | { kind: "mark"; value: number; mask: number } | { kind: "jump" | "goto"; chain: string } | { kind: "log"; prefix: string };
}

const PORT_PROTOS = ["tcp", "udp", "sctp"];

export class Netfilter {
  private readonly chains = new Map<string, CompiledRule[]>();
  private readonly sets = new Map<string, IpsetSpec>();
  private readonly members = new Map<string, Set<string>>();
  private readonly nets = new Map<string, { cidr: Cidr; nomatch: boolean }[]>();

  constructor(
    table: RenderedTable,
    sets: readonly IpsetSpec[],
    private readonly family: Family,
  ) {
    for (const s of sets) {
      assert.equal(s.family, family);
      this.sets.set(s.name, s);
      this.members.set(s.name, new Set(s.members));
      if (s.type === "hash:net") {
        this.nets.set(
          s.name,
          s.members.map((m) => {
            const [net, flag] = m.split(" ") as [string, string | undefined];
            const c = cidrOf(net.includes("/") ? net : `${net}/${family === 4 ? 32 : 128}`);
            assert.ok(c.prefixLen > 0, "ipset refuses /0");
            return { cidr: c, nomatch: flag === "nomatch" };
          }),
        );
      }
    }
    for (const c of table.chains) this.chains.set(c.name, c.rules.map((r) => this.compile(r.body)));
    for (const rules of this.chains.values()) {
      for (const r of rules) if (r.action.kind === "jump" || r.action.kind === "goto") assert.ok(this.chains.has(r.action.chain), `${r.text}: no chain ${r.action.chain}`);
    }
  }

  get chainNames(): string[] {
    return [...this.chains.keys()];
  }

  run(chain: string, p: Packet, depth = 0): SimVerdict {
    if (depth > 20) throw new Error("chain recursion too deep");
    for (const r of this.chains.get(chain) as CompiledRule[]) {
      if (!r.matches.every((m) => m(p))) continue;
      const a = r.action;
      if (a.kind === "verdict") return a.verdict;
      if (a.kind === "mark") {
        p.mark = (p.mark & ~a.mask) ^ a.value;
        continue;
      }
      if (a.kind === "log") {
        (p.log ??= []).push(a.prefix);
        continue;
      }
      const v = this.run(a.chain, p, depth + 1);
      if (a.kind === "goto") return v; // goto: the chain's RETURN goes back to our caller
      if (v !== "RETURN") return v;
    }
    return "RETURN";
  }

  /** Parses one rule body of our vocabulary; throws on anything else. */
  private compile(body: string): CompiledRule {
    const t = tokens(body);
    const matches: ((p: Packet) => boolean)[] = [];
    let i = 0;
    let neg = false;
    let proto: string | undefined;
    let portMatches = 0;
    let modules = 0;
    const next = (): string => {
      const v = t[i++];
      if (v === undefined) throw new Error(`truncated rule ${body}`);
      return v;
    };
    const add = (m: (p: Packet) => boolean): void => {
      const negated = neg;
      matches.push(negated ? (p) => !m(p) : m);
      neg = false;
    };
    const typeCode = (text: string): ((p: Packet) => boolean) => {
      const [type, code] = text.split("/").map(Number) as [number, number | undefined];
      assert.ok(Number.isInteger(type), `icmp type ${text}`);
      return (p) => p.icmpType === type && (code === undefined || (p.icmpCode ?? 0) === code);
    };
    while (i < t.length) {
      const tok = next();
      if (tok === "!") {
        neg = true;
        continue;
      }
      switch (tok) {
        case "-i":
        case "-o": {
          const want = next();
          const out = tok === "-o";
          const prefix = want.endsWith("+") ? want.slice(0, -1) : undefined;
          add((p) => {
            const have = out ? p.outIface : p.inIface;
            return have !== undefined && (prefix !== undefined ? have.startsWith(prefix) : have === want);
          });
          break;
        }
        case "-s":
        case "-d": {
          const c = cidrOf(next());
          assert.equal(c.family, this.family, `rule of the wrong family: ${body}`);
          const src = tok === "-s";
          add((p) => cidrContainsIp(c, ipOf(src ? p.src : p.dst)));
          break;
        }
        case "-p": {
          const want = next();
          assert.equal(modules, 0, `-p must come before the matches (iptables-save order): ${body}`);
          proto = want;
          assert.ok([...PORT_PROTOS, "icmp", "ipv6-icmp"].includes(want), `protocol ${want}`);
          assert.ok(want !== (this.family === 4 ? "ipv6-icmp" : "icmp"), `${want} in a family ${this.family} table: ${body}`);
          add((p) => p.proto === want);
          break;
        }
        case "-m": {
          const mod = next();
          modules++;
          assert.ok(["conntrack", "mark", "set", "tcp", "udp", "sctp", "icmp", "icmp6", "limit", "comment"].includes(mod), `module ${mod}`);
          if (PORT_PROTOS.includes(mod)) {
            assert.equal(proto, mod, `-m ${mod} without -p ${mod}: ${body}`);
            portMatches++;
            assert.ok(portMatches <= 1, `a second -m ${mod} (iptables-nft merges it into the first): ${body}`);
          }
          if (mod === "icmp6") assert.equal(proto, "ipv6-icmp");
          if (mod === "icmp") assert.equal(proto, "icmp");
          break;
        }
        case "--comment":
          assert.match(next(), /^"sluice:[0-9a-f]{16}"$/);
          break;
        case "--ctstate": {
          const states = next().split(",");
          add((p) => states.includes(p.ctstate));
          break;
        }
        case "--mark": {
          const [v, m] = next().split("/").map((x) => parseInt(x, 16)) as [number, number];
          add((p) => (p.mark & m) === v);
          break;
        }
        case "--match-set": {
          const name = next();
          const dirs = next();
          const set = this.sets.get(name);
          assert.ok(set, `rule references undeclared set ${name}`);
          add(this.setMatch(set, dirs));
          break;
        }
        case "--dport":
        case "--sport": {
          const [a, b] = next().split(":").map(Number) as [number, number | undefined];
          const src = tok === "--sport";
          add((p) => {
            const port = src ? p.sport : p.dport;
            return port !== undefined && port >= a && port <= (b ?? a);
          });
          break;
        }
        case "--icmp-type":
          assert.equal(proto, "icmp");
          add(typeCode(next()));
          break;
        case "--icmpv6-type":
          assert.equal(proto, "ipv6-icmp");
          add(typeCode(next()));
          break;
        case "--limit":
          assert.match(next(), /^\d+\/(sec|min|hour|day)$/);
          break;
        case "--limit-burst":
          assert.match(next(), /^\d+$/);
          break;
        case "-j":
        case "-g": {
          assert.equal(neg, false, "negated target");
          const target = next();
          let action: CompiledRule["action"];
          if (target === "MARK") {
            assert.equal(next(), "--set-xmark");
            const [value, mask] = next().split("/").map((x) => parseInt(x, 16)) as [number, number];
            action = { kind: "mark", value, mask };
          } else if (target === "LOG") {
            assert.equal(tok, "-j");
            assert.equal(next(), "--log-prefix");
            const quoted = next();
            assert.match(quoted, /^"[^"]{1,29}"$/, `log prefix ${quoted}`);
            action = { kind: "log", prefix: quoted.slice(1, -1) };
          } else if (target === "ACCEPT" || target === "DROP" || target === "RETURN") {
            assert.equal(tok, "-j");
            action = { kind: "verdict", verdict: target };
          } else action = { kind: tok === "-g" ? "goto" : "jump", chain: target };
          assert.equal(i, t.length, `junk after target: ${body}`);
          return { text: body, matches, action };
        }
        default:
          throw new Error(`unknown token ${tok} in ${body}`);
      }
    }
    throw new Error(`rule without target: ${body}`);
  }

  private setMatch(s: IpsetSpec, dirs: string): (p: Packet) => boolean {
    const members = this.members.get(s.name) as Set<string>;
    if (s.type === "hash:ip") {
      assert.ok(dirs === "src" || dirs === "dst");
      return (p) => members.has(canon(dirs === "src" ? p.src : p.dst));
    }
    if (s.type === "hash:net") {
      assert.ok(dirs === "src" || dirs === "dst");
      const nets = this.nets.get(s.name) ?? [];
      return (p) => {
        const ip = ipOf(dirs === "src" ? p.src : p.dst);
        let best: { len: number; nomatch: boolean } | undefined;
        for (const m of nets) if (cidrContainsIp(m.cidr, ip) && (!best || m.cidr.prefixLen > best.len)) best = { len: m.cidr.prefixLen, nomatch: m.nomatch };
        return best !== undefined && !best.nomatch;
      };
    }
    assert.ok(dirs === "dst,dst" || dirs === "src,src", `hash:ip,port with ${dirs}`);
    const src = dirs === "src,src";
    return (p) => members.has(`${canon(src ? p.src : p.dst)},${p.proto}:${src ? (p.sport ?? -1) : p.dport}`);
  }
}

/** Rule text split as iptables-restore does: on blanks, a double-quoted string is one token (quotes kept). */
export function tokens(body: string): string[] {
  const out: string[] = [];
  const re = /"[^"]*"|\S+/g;
  for (let m = re.exec(body); m; m = re.exec(body)) out.push(m[0]);
  return out;
}

const memo = <T>(f: (k: string) => T): ((k: string) => T) => {
  const m = new Map<string, T>();
  return (k) => {
    let v = m.get(k);
    if (v === undefined) {
      v = f(k);
      m.set(k, v);
    }
    return v;
  };
};
const ipOf = memo(parseIp);
const cidrOf = memo((t) => parseCidr(t, true));
export const canon = memo((a) => formatIp(parseIp(a)));

export const UPLINK = "eth0";
export const VXLAN = "sluice.1";

/**
 * One node's raw and filter tables as the kernel would run them: a packet that arrives
 * (FORWARD, INPUT) meets raw PREROUTING first, before conntrack has classified it; one the
 * node sends (OUTPUT) does not. `kubeIpvs`: with the IPVS path the agent adds where
 * kube-ipvs0 exists (its one Service address SERVICE_VIP).
 */
export class Node {
  readonly nf: Netfilter;
  readonly raw: Netfilter;
  constructor(
    readonly name: string,
    readonly render: PolicyRender,
    readonly family: Family,
    readonly o: { kubeIpvs?: boolean } = {},
  ) {
    const r = o.kubeIpvs ? withKubeIpvs(render, family, [SERVICE_VIP[family]]) : render;
    this.nf = new Netfilter(renderTable(formatTable(policyTableSpec(r))), r.ipsets, family);
    this.raw = new Netfilter(renderTable(formatTable(policyRawTableSpec(render))), [], family);
  }

  /** raw PREROUTING: false when our rules drop the packet there. */
  prerouting(p: Packet): boolean {
    return this.raw.run(POLICY_RAW_CHAIN, p) !== "DROP";
  }
  /** FORWARD: our rules first; falling through them reaches the cluster accept rules. */
  forward(p: Packet): boolean {
    return this.prerouting(p) && this.nf.run("SLUICE-FORWARD", p) !== "DROP";
  }
  input(p: Packet): boolean {
    return this.prerouting(p) && this.nf.run("SLUICE-INPUT", p) !== "DROP";
  }
  output(p: Packet): SimVerdict {
    return this.nf.run("SLUICE-OUTPUT", p);
  }
}

/** A cluster of simulated nodes: each node's render, and each node's own address per family. */
export interface SimCluster {
  family: Family;
  endpoints: readonly PodEndpoint[];
  nodes: Map<string, Node>;
  hostIp: Readonly<Record<string, Readonly<Record<Family, string>>>>;
}

/** The ephemeral source port probes use unless they name one (the evaluator is told the same). */
export const DEFAULT_SPORT = 40000;

/**
 * A NEW connection src -> dst through every node's rules it crosses: allowed or not, and
 * the LOG prefixes it met. Pods are found by address; a node's own address (hostIp) sends
 * from / receives on that node (OUTPUT / INPUT).
 */
export function simulate(cl: SimCluster, c: Connection): { allowed: boolean; log: string[] } {
  const { family } = cl;
  const { pods, hosts } = addressBook(cl);
  const sp = pods.get(canon(c.src));
  const dp = pods.get(canon(c.dst));
  const log: string[] = [];
  const proto: Packet["proto"] = c.protocol === "ICMP" ? (family === 4 ? "icmp" : "ipv6-icmp") : (c.protocol.toLowerCase() as Packet["proto"]);
  const icmp = c.protocol === "ICMP" ? { icmpType: c.icmpType ?? (family === 4 ? 8 : 128), icmpCode: c.icmpCode ?? 0 } : {};
  const base = { src: c.src, dst: c.dst, proto, dport: c.port, sport: c.protocol === "ICMP" ? undefined : (c.srcPort ?? DEFAULT_SPORT), ...icmp, ctstate: "NEW" as const, mark: 0x4000, log };
  const dstHost = hosts.get(canon(c.dst));
  const srcHost = hosts.get(canon(c.src));
  if (sp && dstHost === sp.node) return { allowed: cl.nodes.get(sp.node)?.input({ ...base, inIface: sp.hostIface }) ?? true, log }; // pod -> its own host
  if (dp && srcHost === dp.node) return { allowed: cl.nodes.get(dp.node)?.output({ ...base, outIface: dp.hostIface }) === "ACCEPT", log }; // host -> its own pod
  let ok = true;
  if (sp) {
    const out = dp && dp.node === sp.node ? dp.hostIface : dp ? VXLAN : UPLINK;
    ok &&= cl.nodes.get(sp.node)?.forward({ ...base, inIface: sp.hostIface, outIface: out }) ?? true;
  }
  if (ok && dp && (!sp || sp.node !== dp.node)) {
    ok &&= cl.nodes.get(dp.node)?.forward({ ...base, inIface: sp ? VXLAN : UPLINK, outIface: dp.hostIface }) ?? true;
  }
  return { allowed: ok, log };
}

const books = new WeakMap<SimCluster, { pods: Map<string, PodEndpoint>; hosts: Map<string, string> }>();

/** Pods and nodes by canonical address, once per cluster. */
function addressBook(cl: SimCluster): { pods: Map<string, PodEndpoint>; hosts: Map<string, string> } {
  let b = books.get(cl);
  if (!b) {
    b = { pods: new Map(), hosts: new Map() };
    for (const e of cl.endpoints) for (const a of e.ips) b.pods.set(canon(a), e);
    for (const [n, a] of Object.entries(cl.hostIp)) b.hosts.set(canon(a[cl.family]), n);
    books.set(cl, b);
  }
  return b;
}

/** What a verdict's log steps should have printed: egress first, then ingress if egress let the packet on. */
export function expectedLog(v: ReturnType<PolicyEvaluator["evaluate"]>, prefixOf: (step: ExplainStep, d: "ingress" | "egress") => string): string[] {
  const logs = (d: "ingress" | "egress"): string[] => v[d].path.filter((s) => s.action === "log").map((s) => prefixOf(s, d));
  return [...logs("egress"), ...(v.egress.allowed ? logs("ingress") : [])];
}

export interface CrossCheckOptions {
  /** Compare the LOG prefixes met with the evaluator's log steps (needs prefixOf). */
  prefixOf?: (step: ExplainStep, d: "ingress" | "egress") => string;
}

/**
 * Every flow between the addresses (pods of the family, the nodes' own addresses, the
 * extra ones), every probe: simulated chains == the evaluator. That includes a pod to its
 * own node (through INPUT, judged by the Admin and Baseline tiers), its own node to the pod
 * (always allowed, checked on its own below) and each pod address to itself as a Service
 * hairpin would carry it (through FORWARD, in and out of the pod's interface; the evaluator
 * is told `hairpin`). Returns the count checked.
 */
export function crossCheck(cl: SimCluster, ev: PolicyEvaluator, extra: readonly string[], probes: readonly Omit<Connection, "src" | "dst">[], opts: CrossCheckOptions = {}): number {
  const { family } = cl;
  const isFam = (a: string): boolean => parseIp(a).family === family;
  const podAddrs = cl.endpoints.flatMap((e) => e.ips.filter(isFam));
  const hosts = Object.values(cl.hostIp).map((h) => h[family]);
  const addrs = [...new Set([...podAddrs, ...hosts, ...extra.filter(isFam)])];
  let checked = 0;
  for (const src of addrs) {
    for (const dst of addrs) {
      if (!podAddrs.includes(src) && !podAddrs.includes(dst)) continue;
      if (src === dst && !podAddrs.includes(src)) continue;
      const hairpin = cl.endpoints.some((e) => e.ips.includes(src) && e.ips.includes(dst));
      for (const probe of probes) {
        const c: Connection = { ...probe, src, dst, srcPort: probe.protocol === "ICMP" ? undefined : (probe.srcPort ?? DEFAULT_SPORT), ...(hairpin ? { hairpin } : {}) };
        const want = ev.evaluate(c);
        const got = simulate(cl, c);
        const what = (): string => `${src} -> ${dst} ${probe.protocol}/${probe.protocol === "ICMP" ? `${probe.icmpType ?? "echo"}/${probe.icmpCode ?? 0}` : `${c.srcPort}->${probe.port}`}`;
        if (got.allowed !== want.allowed) {
          const path = (d: "egress" | "ingress"): string => want[d].path.map((s) => s.text).join(" | ");
          assert.fail(`${what()}: rules say ${got.allowed ? "allow" : "deny"}, the evaluator says ${want.allowed ? "allow" : "deny"}\n  egress:  ${path("egress")}\n  ingress: ${path("ingress")}`);
        }
        if (opts.prefixOf) {
          const logged = expectedLog(want, opts.prefixOf);
          if (got.log.length !== logged.length || got.log.some((x, i) => x !== logged[i])) assert.deepEqual(got.log, logged, `${what()}: logged`);
        }
        checked++;
      }
    }
  }
  // The node a pod runs on always reaches it (the host's own traffic: kubelet probes), whatever the pod's policy.
  for (const e of cl.endpoints) {
    const hostIp = cl.hostIp[e.node]?.[family];
    if (hostIp === undefined) continue;
    for (const a of e.ips.filter(isFam)) {
      for (const probe of probes) {
        const c: Connection = { ...probe, src: hostIp, dst: a };
        assert.equal(simulate(cl, c).allowed, true, `${hostIp} -> ${a} (its own node to the pod) ${probe.protocol}/${probe.port}`);
        assert.equal(ev.evaluate(c).allowed, true, `evaluator: ${hostIp} -> ${a} (its own node to the pod)`);
        checked++;
      }
    }
  }
  return checked;
}

// ---------------------------------------------------------------- kube-proxy in IPVS mode

/** The Service address kube-proxy put on kube-ipvs0, per family (any address no pod or node has). */
export const SERVICE_VIP: Readonly<Record<Family, string>> = { 4: "10.96.0.10", 6: "fd00:96::a" };
const VXLAN_UDP_PORT = 8472;

/**
 * A NEW connection from `c.src` to a Service address on node `via`, which that node's IPVS
 * (NAT mode, as kube-proxy uses it: the source is kept) sends to the backend pod `c.dst`:
 * allowed or not, and the LOG prefixes met. The netfilter path, hop by hop:
 *
 * - a client that is `via` itself: IPVS rewrites in LOCAL_OUT, before the filter table, so
 *   the packet meets OUTPUT only, already for the backend;
 * - any other client (a pod of `via` on its interface, or anything on the uplink) is for a
 *   local address: INPUT first (with the Service address), then IPVS rewrites the destination
 *   and sends the same packet, its mark kept, through OUTPUT to the backend;
 * - a backend on another node: the VXLAN packet that carries it leaves `via` through OUTPUT with
 *   the inner packet's mark (it must pass), arrives in that node's INPUT, and the decapsulated
 *   packet (still that skb: the outer's mark) is forwarded to the pod.
 *
 * A pod reaches a Service through its own node (its node's IPVS takes it), so a pod client
 * must be on `via`. `via` may lack the IPVS rules (a Node without kubeIpvs): the kernel's path
 * is the same, which shows what those rules are for.
 */
export function simulateIpvs(cl: SimCluster, c: Connection, via: string): { allowed: boolean; log: string[] } {
  const { family } = cl;
  const { pods, hosts } = addressBook(cl);
  const sp = pods.get(canon(c.src));
  const dp = pods.get(canon(c.dst));
  assert.ok(dp, `the backend ${c.dst} is a pod`);
  assert.ok(!sp || sp.node === via, `a pod reaches a Service through its own node (${c.src} is on ${sp?.node}, not ${via})`);
  // The node may lack the IPVS rules (Node without kubeIpvs): the path is the kernel's either way.
  const node = cl.nodes.get(via);
  assert.ok(node, `no node ${via}`);
  const log: string[] = [];
  const proto: Packet["proto"] = c.protocol === "ICMP" ? (family === 4 ? "icmp" : "ipv6-icmp") : (c.protocol.toLowerCase() as Packet["proto"]);
  const icmp = c.protocol === "ICMP" ? { icmpType: c.icmpType ?? (family === 4 ? 8 : 128), icmpCode: c.icmpCode ?? 0 } : {};
  const p: Packet = { src: c.src, dst: SERVICE_VIP[family], proto, dport: c.port, sport: c.protocol === "ICMP" ? undefined : (c.srcPort ?? DEFAULT_SPORT), ...icmp, ctstate: "NEW", mark: 0x4000, log };
  if (hosts.get(canon(c.src)) !== via) {
    p.inIface = sp ? sp.hostIface : UPLINK;
    if (!node.input(p)) return { allowed: false, log };
    delete p.inIface;
  }
  p.dst = c.dst;
  const local = dp.node === via;
  p.outIface = local ? dp.hostIface : VXLAN;
  if (node.output(p) === "DROP") return { allowed: false, log };
  if (local) return { allowed: true, log };
  const hostOf = (n: string): string => cl.hostIp[n]?.[family] ?? assert.fail(`no address of node ${n}`);
  const outer: Packet = { src: hostOf(via), dst: hostOf(dp.node), proto: "udp", dport: VXLAN_UDP_PORT, sport: DEFAULT_SPORT, ctstate: "NEW", mark: p.mark, outIface: UPLINK };
  assert.notEqual(node.output(outer), "DROP", `the VXLAN packet carrying ${c.src} -> ${c.dst} leaves ${via} (mark ${p.mark.toString(16)})`);
  const remote = cl.nodes.get(dp.node);
  if (!remote) return { allowed: true, log };
  const arrived: Packet = { ...outer, outIface: undefined, inIface: UPLINK, mark: 0x4000 };
  assert.equal(remote.input(arrived), true, `the VXLAN packet is taken in on ${dp.node}`);
  return { allowed: remote.forward({ ...p, outIface: dp.hostIface, inIface: VXLAN, mark: arrived.mark }), log };
}

/**
 * Service traffic through IPVS on every node of `cl` that has it on: every client that can
 * send through that node's IPVS (its pods, every node's and every extra address) to every pod
 * of the family as the backend (the client itself included: a hairpin), every probe. The
 * simulated verdict must be the evaluator's for the client -> backend connection: the path
 * changes nothing about what is allowed. Left out: a node's own address to a backend on that
 * node through another node's IPVS (the kernel drops a packet that arrives with its own
 * address as the source). Returns the count checked.
 */
export function crossCheckIpvs(cl: SimCluster, ev: PolicyEvaluator, extra: readonly string[], probes: readonly Omit<Connection, "src" | "dst">[], opts: CrossCheckOptions = {}): number {
  const { family } = cl;
  const isFam = (a: string): boolean => parseIp(a).family === family;
  const { pods, hosts } = addressBook(cl);
  const backends = cl.endpoints.flatMap((e) => e.ips.filter(isFam));
  const others = [...Object.values(cl.hostIp).map((h) => h[family]), ...extra.filter(isFam)].filter((a) => !pods.has(canon(a)));
  let checked = 0;
  for (const [via, node] of cl.nodes) {
    if (!node.o.kubeIpvs) continue;
    const clients = [...new Set([...cl.endpoints.filter((e) => e.node === via).flatMap((e) => e.ips.filter(isFam)), ...others])];
    for (const src of clients) {
      for (const dst of backends) {
        const srcHost = hosts.get(canon(src));
        if (srcHost !== undefined && srcHost !== via && srcHost === pods.get(canon(dst))?.node) continue;
        for (const probe of probes) {
          // A pod reaching itself through the Service is a hairpin: the Admin and Baseline tiers judge it.
          const c: Connection = { ...probe, src, dst, srcPort: probe.protocol === "ICMP" ? undefined : (probe.srcPort ?? DEFAULT_SPORT), ...(canon(src) === canon(dst) ? { hairpin: true } : {}) };
          const want = ev.evaluate(c);
          const got = simulateIpvs(cl, c, via);
          const what = (): string => `${src} -> Service on ${via} -> ${dst} ${probe.protocol}/${probe.protocol === "ICMP" ? "echo" : probe.port}`;
          if (got.allowed !== want.allowed) {
            const path = (d: "egress" | "ingress"): string => want[d].path.map((s) => s.text).join(" | ");
            assert.fail(`${what()}: rules say ${got.allowed ? "allow" : "deny"}, the evaluator says ${want.allowed ? "allow" : "deny"}\n  egress:  ${path("egress")}\n  ingress: ${path("ingress")}`);
          }
          if (opts.prefixOf) assert.deepEqual(got.log, expectedLog(want, opts.prefixOf), `${what()}: logged`);
          checked++;
        }
      }
    }
  }
  return checked;
}
