/**
 * The tiers against the real kernel, per iptables backend, in throwaway namespaces:
 *
 * - a render that uses every construct (admin/baseline chains, pass guards, LOG with rate
 *   limits, rule and log chains, nodes / network-set / allOf peers, exclusions, source
 *   ports, self, ICMP and ICMPv6 types) is accepted by ipset and iptables-restore, reads
 *   back from iptables-save exactly as rendered, and a resync writes nothing;
 * - real packets through a node namespace with three pod namespaces and an outside host:
 *   an admin deny beats a NetworkPolicy allow, a pass hands over to the NetworkPolicy tier,
 *   a baseline deny applies to a pod no NetworkPolicy isolates (and not to one it does),
 *   ICMP echo allowed and denied (both families), a LOG rule counts the packet and lets it on;
 * - a pod's own node and a Service hairpin back to the pod itself, both families: Admin Deny
 *   rules with `nodes` and `networks` peers block the pod's own node, a NetworkPolicy that
 *   isolates the pod does not, a Baseline Deny does even then; through a DNAT'ed service
 *   address back to itself a pod is judged by the Baseline tier, never by NetworkPolicy.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PolicyDataplane } from "../../src/dataplane/policyDataplane.js";
import { nsExec, nsTry } from "../../src/sandbox/netns.js";
import { type ContainerPort, type NamespaceInfo, type PodEndpoint, hostIfaceName } from "../../src/model/endpoint.js";
import { type Family, parseCidr } from "../../src/model/ip.js";
import type { LabelSelector } from "../../src/config/k8sSchemas.js";
import type { Peer, PodSet, PolicyIR, PortSpec, RuleAction, RuleIR } from "../../src/policy/ir.js";
import type { NetworkSetInfo, NodeInfo, PolicyModel } from "../../src/policy/model.js";
import { normalizeSelector } from "../../src/policy/selectors.js";
import { networkPolicyToIr } from "../../src/policy/networkPolicy.js";
import { networkPolicyObject } from "../../src/config/k8sSchemas.js";
import { PolicyEvaluator } from "../../src/policy/evaluate.js";
import { logPrefix, policyChainName, renderPolicyModel } from "../../src/render/policy.js";
import { hostRuleset } from "../../src/render/hostRules.js";
import { renderTable, type Ruleset } from "../../src/render/ruleset.js";
import { formatRule, formatTable } from "../../src/render/iptablesFormat.js";
import type { PolicyRender } from "../../src/render/policyContract.js";
import { captureLog } from "../helpers/log.js";
import { makeNetns, removeNetnsWithPrefix, uniquePrefix } from "../helpers/netns.js";

const prefix = uniquePrefix("ptier");
const NODE = "n1";

const namespaces: NamespaceInfo[] = [
  { name: "prod", labels: { env: "prod" } },
  { name: "dev", labels: { env: "dev" } },
];
const http: ContainerPort = { name: "http", containerPort: 80, protocol: "TCP" };
const dns: ContainerPort = { name: "dns", containerPort: 53, protocol: "UDP" };
const ep = (namespace: string, name: string, v4: string, v6: string, labels: Record<string, string>, ports: ContainerPort[] = []): PodEndpoint => ({ namespace, pod: name, node: NODE, hostIface: hostIfaceName(namespace, name), ips: [v4, v6], labels, ports });
const web = ep("prod", "web", "10.244.1.2", "fd00:244:1::2", { app: "web" }, [http]);
const db = ep("prod", "db", "10.244.1.3", "fd00:244:1::3", { app: "db" });
const tool = ep("dev", "tool", "10.244.1.4", "fd00:244:1::4", { app: "tool" }, [dns]);
const remote: PodEndpoint = { ...ep("prod", "api", "10.244.2.4", "fd00:244:2::4", { app: "api" }, [http]), node: "n2" };
const endpoints = [web, db, tool, remote];
const OUTSIDE = { 4: "192.0.2.7", 6: "fd00:192::7" } as const;
const UPLINK_IP = { 4: "192.0.2.1", 6: "fd00:192::1" } as const;
const GATEWAY = { 4: "10.244.1.1", 6: "fd00:244:1::1" } as const;

const nodes: NodeInfo[] = [
  { name: NODE, labels: { role: "worker" }, addresses: [UPLINK_IP[4], UPLINK_IP[6]] },
  { name: "n2", labels: { role: "worker", zone: "b" }, addresses: ["192.168.0.2", "fd99::2"] },
];
const networkSets: NetworkSetInfo[] = [
  { namespace: undefined, name: "outside", labels: { kind: "outside" }, nets: ["192.0.2.0/24", "fd00:192::/64", "0.0.0.0/0"] },
  { namespace: "dev", name: "partners", labels: { kind: "partner" }, nets: ["198.51.100.0/24", "2001:db8::/32"] },
];

const sel = (labels: Record<string, string> = {}): LabelSelector => normalizeSelector({ matchLabels: labels });
const inNs = (ns: string, labels: Record<string, string> = {}): PodSet => ({ namespaces: { kind: "name", name: ns }, pods: sel(labels) });
const everyPod: PodSet = { namespaces: { kind: "selector", selector: sel() }, pods: sel() };
const any: Peer = { kind: "any" };
const block = (cidr: string, ...except: string[]): Peer => ({ kind: "ipBlock", cidr, except });
const tcp = (from: number, to = from): PortSpec => ({ kind: "range", protocol: "TCP", from, to });
const udp = (port: number): PortSpec => ({ kind: "range", protocol: "UDP", from: port, to: port });
const icmp = (family: 4 | 6, type?: number, code?: number): PortSpec => ({ kind: "icmp", family, type, code });
const rule = (action: RuleAction, peers: Peer[], ports: PortSpec[] | "all" = "all", extra: Partial<RuleIR> = {}): RuleIR => ({ action, peers, ports, ...extra });
const cnp = (name: string, tier: "admin" | "baseline", priority: number, subject: PodSet, r: { ingress?: RuleIR[]; egress?: RuleIR[] }): PolicyIR => ({ id: `cnp:${name}`, tier, priority, subject, ingress: r.ingress, egress: r.egress, origin: { kind: "ClusterNetworkPolicy", name } });
const gnp = (name: string, order: number, subject: PodSet, r: { ingress?: RuleIR[]; egress?: RuleIR[] }): PolicyIR => ({ id: `gnp:${name}`, tier: "admin", priority: 1_000_000 + order, subject, ingress: r.ingress, egress: r.egress, origin: { kind: "GlobalNetworkPolicy", name } });
const knp = (namespace: string, name: string, spec: unknown): PolicyIR => ({
  ...networkPolicyToIr(networkPolicyObject.parse({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace }, spec })),
  origin: { kind: "NetworkPolicy", namespace, name },
});

/** Every construct at once (not meant to make sense as a policy set). */
const kitchenSink: PolicyIR[] = [
  cnp("audit", "admin", 1, everyPod, {
    ingress: [rule("log", [any], [tcp(80)]), rule("pass", [{ kind: "nodes", nodes: sel({ role: "worker" }) }]), rule("deny", [any], [icmp(4, 3, 1), icmp(6, 1, 3)])],
    egress: [rule("log", [{ kind: "networkSets", sets: { namespaces: "global", selector: sel({ kind: "outside" }) } }, block("10.0.0.0/8")], [tcp(80), udp(53)])],
  }),
  gnp("fine", 5, inNs("prod"), {
    ingress: [
      rule("allow", [any], [tcp(80, 90)], {
        notPeers: [{ kind: "pods", pods: inNs("dev") }],
        notPorts: [tcp(85)],
        srcPorts: [tcp(1024, 65535)],
        notSrcPorts: [tcp(40001)],
        self: { peers: [block("10.244.1.0/24"), block("fd00:244:1::/64")], notPeers: [block("10.244.1.3/32"), block("fd00:244:1::3/128")] },
      }),
      rule("allow", [{ kind: "allOf", peers: [{ kind: "pods", pods: inNs("prod", { app: "api" }) }, block("10.244.2.0/24"), block("fd00:244:2::/64")] }], [{ kind: "named", protocol: "TCP", name: "http" }]),
      rule("allow", [any], [{ kind: "protocol", protocol: "TCP" }], { notPorts: [tcp(22)] }),
      rule("deny", [any], "all", { notPorts: [{ kind: "protocol", protocol: "TCP" }, icmp(4, 8), icmp(6, 128)] }),
    ],
    egress: [
      rule("allow", [any], [udp(53)], { srcPorts: [{ kind: "named", protocol: "UDP", name: "dns" }] }),
      rule("deny", [{ kind: "networkSets", sets: { namespaces: { kind: "name", name: "dev" }, selector: sel({ kind: "partner" }) } }], [icmp(4), icmp(6)], { notPorts: [icmp(4, 8, 0), icmp(6, 128, 0)] }),
      rule("deny", [any], [tcp(5432)], { notPeers: [{ kind: "allOf", peers: [{ kind: "pods", pods: inNs("prod") }, block("10.244.1.0/24")] }] }),
      rule("deny", [any], [tcp(6379)], { notPeers: [{ kind: "pods", pods: inNs("prod") }] }),
      rule("pass", [any], [icmp(4, 0), icmp(6, 129)]),
    ],
  }),
  knp("prod", "web-http", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ ports: [{ port: "http" }, { port: 8080, endPort: 8090 }] }] }),
  cnp("base", "baseline", 1, everyPod, { ingress: [rule("log", [any]), rule("pass", [block("192.0.2.0/24"), block("fd00:192::/64")]), rule("deny", [any], [tcp(0, 1023), udp(53)])] }),
  cnp("base-2", "baseline", 2, inNs("dev"), { egress: [rule("deny", [any], [{ kind: "protocol", protocol: "SCTP" }, { kind: "range", protocol: "SCTP", from: 9, to: 9 }])] }),
];

/** The policies the packets test. */
const packetPolicies: PolicyIR[] = [
  // log every TCP 80 into any pod, then go on
  cnp("audit", "admin", 1, everyPod, { ingress: [rule("log", [any], [tcp(80)])] }),
  // db: the outside passes to the NetworkPolicy tier, anything else is denied
  cnp("db-pass", "admin", 5, inNs("prod", { app: "db" }), { ingress: [rule("pass", [block("192.0.2.0/24"), block("fd00:192::/64")]), rule("deny", [any])] }),
  // dev may not reach prod on TCP 80, whatever a NetworkPolicy says
  cnp("tenant-isolation", "admin", 10, inNs("prod"), { ingress: [rule("deny", [{ kind: "pods", pods: { namespaces: { kind: "selector", selector: sel({ env: "dev" }) }, pods: sel() } }], [tcp(80)])] }),
  // no echo into db; echo only (no other ICMP) into tool
  gnp("icmp", 1, inNs("prod", { app: "db" }), { ingress: [rule("deny", [any], [icmp(4, 8), icmp(6, 128)])] }),
  gnp("tool-icmp", 2, inNs("dev"), { ingress: [rule("allow", [any], [icmp(4, 8), icmp(6, 128)]), rule("deny", [any], [icmp(4), icmp(6)])] }),
  knp("prod", "web-all", { podSelector: { matchLabels: { app: "web" } }, ingress: [{}] }),
  knp("prod", "db-5432", { podSelector: { matchLabels: { app: "db" } }, ingress: [{ ports: [{ port: 5432 }] }] }),
  // baseline: nothing from the outside on TCP 8080 (only tool is not isolated by a NetworkPolicy)
  cnp("default-deny", "baseline", 1, everyPod, { ingress: [rule("deny", [block("192.0.2.0/24"), block("fd00:192::/64")], [tcp(8080)])] }),
];

const modelOf = (policies: PolicyIR[]): PolicyModel => ({ endpoints, namespaces, nodes, networkSets, policies, warnings: [] });

function rulesetOf(family: Family, render: PolicyRender): Ruleset {
  const network = parseCidr(family === 4 ? "10.244.0.0/16" : "fd00:244::/32");
  const subnet = parseCidr(family === 4 ? "10.244.1.0/24" : "fd00:244:1::/64");
  return hostRuleset({ family, network, subnet, ipMasq: false, randomFully: false, forwardRules: true }, render, ["filter"]);
}

const render = (family: Family, policies: PolicyIR[]): PolicyRender => renderPolicyModel({ family, nodeName: NODE, model: modelOf(policies), sctpSupported: false });

for (const mode of ["nft", "legacy"] as const) {
  describe(`policy tiers (${mode}) in throwaway namespaces`, () => {
    const base = `${prefix}-${mode}`;
    const nodeNs = `${base}-node`;
    const outNs = `${base}-out`;
    const podNs = (p: PodEndpoint): string => `${base}-${p.pod}`;
    const dps = new Map<Family, PolicyDataplane>();
    const save = (family: Family, counters = false, table = "filter"): Promise<string> => nsExec(nodeNs, `ip${family === 6 ? "6" : ""}tables-${mode}-save`, [...(counters ? ["-c"] : []), "-t", table]);
    const sh = (ns: string, ...args: string[]): Promise<string> => nsExec(ns, args[0] as string, args.slice(1));

    before(async () => {
      await makeNetns(nodeNs);
      await makeNetns(outNs);
      await sh(nodeNs, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");
      // the node's uplink to an outside host
      await sh(nodeNs, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", outNs);
      await sh(nodeNs, "ip", "addr", "add", `${UPLINK_IP[4]}/24`, "dev", "up0");
      await sh(nodeNs, "ip", "addr", "add", `${UPLINK_IP[6]}/64`, "dev", "up0", "nodad");
      await sh(nodeNs, "ip", "link", "set", "up0", "up");
      await sh(outNs, "ip", "addr", "add", `${OUTSIDE[4]}/24`, "dev", "eth0");
      await sh(outNs, "ip", "addr", "add", `${OUTSIDE[6]}/64`, "dev", "eth0", "nodad");
      await sh(outNs, "ip", "link", "set", "eth0", "up");
      await sh(outNs, "ip", "route", "add", "default", "via", UPLINK_IP[4]);
      await sh(outNs, "ip", "-6", "route", "add", "default", "via", UPLINK_IP[6]);
      // pods: a veth each, /32 and /128 addresses, the node's gateway address on every host side
      for (const p of [web, db, tool]) {
        const ns = podNs(p);
        await makeNetns(ns);
        await sh(nodeNs, "ip", "link", "add", p.hostIface, "type", "veth", "peer", "name", "eth0", "netns", ns);
        await sh(nodeNs, "ip", "addr", "add", `${GATEWAY[4]}/32`, "dev", p.hostIface);
        await sh(nodeNs, "ip", "addr", "add", `${GATEWAY[6]}/128`, "dev", p.hostIface, "nodad");
        await sh(nodeNs, "ip", "link", "set", p.hostIface, "up");
        await sh(nodeNs, "ip", "route", "add", `${p.ips[0] as string}/32`, "dev", p.hostIface);
        await sh(nodeNs, "ip", "-6", "route", "add", `${p.ips[1] as string}/128`, "dev", p.hostIface);
        await sh(ns, "ip", "addr", "add", `${p.ips[0] as string}/32`, "dev", "eth0");
        await sh(ns, "ip", "addr", "add", `${p.ips[1] as string}/128`, "dev", "eth0", "nodad");
        await sh(ns, "ip", "link", "set", "eth0", "up");
        await sh(ns, "ip", "route", "add", GATEWAY[4], "dev", "eth0");
        await sh(ns, "ip", "route", "add", "default", "via", GATEWAY[4]);
        await sh(ns, "ip", "-6", "route", "add", GATEWAY[6], "dev", "eth0");
        await sh(ns, "ip", "-6", "route", "add", "default", "via", GATEWAY[6]);
      }
      // Docker >= 1.13 sets FORWARD to DROP: allowed traffic must be accepted by our rules.
      await sh(nodeNs, `iptables-${mode}`, "-P", "FORWARD", "DROP");
      await sh(nodeNs, `ip6tables-${mode}`, "-P", "FORWARD", "DROP");
      for (const f of [4, 6] as const) dps.set(f, new PolicyDataplane({ family: f, mode, netns: nodeNs, log: captureLog().log }));
    });
    after(async () => removeNetnsWithPrefix(base));

    const apply = async (family: Family, policies: PolicyIR[]): Promise<{ r: PolicyRender; ruleset: Ruleset }> => {
      const r = render(family, policies);
      const ruleset = rulesetOf(family, r);
      await (dps.get(family) as PolicyDataplane).apply(family, ruleset, r.ipsets);
      return { r, ruleset };
    };

    for (const family of [4, 6] as const) {
      test(`IPv${family}: every construct is accepted, reads back exactly as rendered, and a resync writes nothing`, async () => {
        const { r, ruleset } = await apply(family, kitchenSink);
        const names = r.chains.map((c) => c.name);
        for (const kind of ["slc-ri-", "slc-ro-", "slc-lo-", "slc-pi-", "slc-po-"]) assert.ok(names.some((n) => n.startsWith(kind)), `a ${kind} chain is rendered`);
        const text = r.chains.flatMap((c) => c.rules.map(formatRule)).join("\n");
        for (const m of ["! --match-set", "--sport", "! --dport", "-j LOG", "0x20000/0x20000", family === 4 ? "--icmp-type 3/1" : "--icmpv6-type 1/3", "src,src"]) assert.ok(text.includes(m), `rendered: ${m}`);
        assert.deepEqual(ruleset.tables.map((t) => t.table), ["raw", "filter"]);
        for (const spec of ruleset.tables) {
          const saved = new Set((await save(family, false, spec.table)).split("\n").filter((l) => l.startsWith("-A ")));
          const table = renderTable(formatTable(spec));
          for (const c of table.chains) for (const rule of c.rules) assert.ok(saved.has(`-A ${c.name} ${rule.body}`), `iptables-save -t ${spec.table} prints a rule otherwise:\n  -A ${c.name} ${rule.body}\n${[...saved].filter((l) => l.startsWith(`-A ${c.name} `)).join("\n")}`);
          for (const h of table.hooks) assert.ok(saved.has(`-A ${h.builtin} ${h.rule.body}`), `hook ${h.builtin} -> ${h.target} in ${spec.table}`);
        }
        const dp = dps.get(family) as PolicyDataplane;
        const writes = dp.writes;
        const again = await dp.apply(family, ruleset, r.ipsets);
        assert.equal(again.wrote, false, "the resync changed something");
        assert.equal(dp.writes, writes);
      });
    }

    /** "open" (connected or refused: the SYN got there and the answer came back) or "blocked" (timed out). */
    const tcpProbe = async (from: string, to: string, port: number): Promise<"open" | "blocked"> => {
      const script = `const s=require("net").connect({host:${JSON.stringify(to)},port:${port}});const t=setTimeout(()=>{console.log("timeout");process.exit(0)},1200);s.on("connect",()=>{console.log("open");process.exit(0)});s.on("error",(e)=>{console.log(e.code);process.exit(0)});`;
      const out = (await nsExec(from, process.execPath, ["-e", script])).trim();
      if (out === "open" || out === "ECONNREFUSED") return "open";
      assert.equal(out, "timeout", `unexpected probe result ${out}`);
      return "blocked";
    };
    const ping = async (from: string, to: string): Promise<boolean> => (await nsTry(from, "ping", ["-c", "1", "-W", "1", to])).code === 0;

    test("real packets: admin deny beats a NetworkPolicy allow; pass hands over to the NetworkPolicy tier; baseline only where no NetworkPolicy isolates", async () => {
      for (const f of [4, 6] as const) await apply(f, packetPolicies);
      const ev = PolicyEvaluator.fromModel(modelOf(packetPolicies), { sctpSupported: false });
      const cases: { from: string; fromAddr: string; to: PodEndpoint; port: number; want: "open" | "blocked"; why: string }[] = [
        { from: podNs(tool), fromAddr: tool.ips[0] as string, to: web, port: 80, want: "blocked", why: "admin deny (dev -> prod TCP 80) beats web-all" },
        { from: outNs, fromAddr: OUTSIDE[4], to: web, port: 80, want: "open", why: "web-all allows; the admin log let it on" },
        { from: podNs(tool), fromAddr: tool.ips[0] as string, to: web, port: 81, want: "open", why: "not TCP 80: web-all allows" },
        { from: outNs, fromAddr: OUTSIDE[4], to: db, port: 5432, want: "open", why: "pass -> db-5432 allows" },
        { from: outNs, fromAddr: OUTSIDE[4], to: db, port: 5433, want: "blocked", why: "pass -> isolated by db-5432" },
        { from: podNs(web), fromAddr: web.ips[0] as string, to: db, port: 5432, want: "blocked", why: "db-pass rule 2 denies before db-5432 could allow" },
        { from: outNs, fromAddr: OUTSIDE[4], to: tool, port: 8080, want: "blocked", why: "baseline deny: tool is not isolated" },
        { from: outNs, fromAddr: OUTSIDE[4], to: tool, port: 8081, want: "open", why: "default allow" },
        { from: outNs, fromAddr: OUTSIDE[4], to: web, port: 8080, want: "open", why: "web is isolated by web-all (which allows): no baseline" },
        { from: outNs, fromAddr: OUTSIDE[6], to: tool, port: 8080, want: "blocked", why: "baseline deny, IPv6" },
        { from: outNs, fromAddr: OUTSIDE[6], to: db, port: 5432, want: "open", why: "pass, IPv6" },
      ];
      for (const c of cases) {
        const family = c.fromAddr.includes(":") ? 6 : 4;
        const dst = c.to.ips[family === 4 ? 0 : 1] as string;
        const predicted = ev.evaluate({ src: c.fromAddr, dst, protocol: "TCP", port: c.port }).allowed ? "open" : "blocked";
        assert.equal(predicted, c.want, `evaluator: ${c.why}`);
        assert.equal(await tcpProbe(c.from, dst, c.port), c.want, `${c.fromAddr} -> ${dst}:${c.port}: ${c.why}`);
      }
    });

    test("real packets: ICMP echo allowed and denied by type, both families", async () => {
      assert.equal(await ping(outNs, web.ips[0] as string), true, "web: no ICMP policy");
      assert.equal(await ping(outNs, db.ips[0] as string), false, "db: echo denied");
      assert.equal(await ping(outNs, tool.ips[0] as string), true, "tool: echo allowed");
      assert.equal(await ping(outNs, db.ips[1] as string), false, "db: ICMPv6 echo denied");
      assert.equal(await ping(outNs, tool.ips[1] as string), true, "tool: ICMPv6 echo allowed");
      assert.equal(await ping(podNs(db), OUTSIDE[4]), true, "db's own echo out (and its reply back) is not touched");
      assert.equal(await ping(podNs(db), GATEWAY[4]), true, "a pod always reaches its own node");
    });

    test("real packets: a LOG rule counts the packet and lets it on", async () => {
      const chain = policyChainName("ingress", "cnp:audit");
      const prefixText = logPrefix(packetPolicies[0] as PolicyIR, "ingress", 0);
      const count = async (): Promise<number> => {
        const line = (await save(4, true)).split("\n").find((l) => l.includes(`-A ${chain} `) && l.includes("-j LOG"));
        assert.ok(line?.includes(`--log-prefix "${prefixText}"`), `LOG rule: ${line}`);
        return Number(/^\[(\d+):/.exec(line ?? "")?.[1]);
      };
      const before = await count();
      assert.equal(await tcpProbe(outNs, web.ips[0] as string, 80), "open");
      assert.equal(await count(), before + 1, "the SYN was logged once");
      assert.equal(await tcpProbe(outNs, web.ips[0] as string, 443), "open");
      assert.equal(await count(), before + 1, "TCP 443 is not logged");
    });

    test("raw table: a local pod's source check comes and goes with the pod, and only that chain is rewritten", async () => {
      for (const family of [4, 6] as const) {
        const dp = dps.get(family) as PolicyDataplane;
        const full = render(family, packetPolicies);
        await dp.apply(family, rulesetOf(family, full), full.ipsets);
        const own = (p: PodEndpoint): string => `-s ${p.ips[family === 4 ? 0 : 1] as string}/${family === 4 ? 32 : 128} -i ${p.hostIface} `;
        for (const p of [web, db, tool]) assert.ok((await save(family, false, "raw")).includes(own(p)), `IPv${family}: ${p.pod}'s source check`);
        const without = renderPolicyModel({ family, nodeName: NODE, model: { ...modelOf(packetPolicies), endpoints: endpoints.filter((e) => e !== tool) }, sctpSupported: false });
        const report = await dp.apply(family, rulesetOf(family, without), without.ipsets);
        assert.deepEqual(report.iptables.find((r) => r.table === "raw")?.plan.rewritten, ["slc-antispoof"], `IPv${family}: only the check chain is rewritten`);
        const raw = await save(family, false, "raw");
        assert.ok(!raw.includes(tool.hostIface), `IPv${family}: tool's check went with tool:\n${raw}`);
        for (const p of [web, db]) assert.ok(raw.includes(own(p)), `IPv${family}: ${p.pod}'s check stays`);
        await dp.apply(family, rulesetOf(family, full), full.ipsets);
      }
    });

    test("real packets: a pod's own node and a Service hairpin are judged by the Admin and Baseline tiers, never by NetworkPolicy", async () => {
      const ownNode: PolicyIR[] = [
        // dev may reach no worker node (its own, n1, is one), prod/db not TCP 22 of its own node's address
        cnp("no-workers-for-dev", "admin", 1, inNs("dev"), { egress: [rule("deny", [{ kind: "nodes", nodes: sel({ role: "worker" }) }])] }),
        cnp("no-ssh-for-db", "admin", 2, inNs("prod", { app: "db" }), { egress: [rule("deny", [block(`${UPLINK_IP[4]}/32`), block(`${UPLINK_IP[6]}/128`)], [tcp(22)])] }),
        // prod sends nothing, as far as NetworkPolicy can say; web takes only dev in
        knp("prod", "no-egress", { podSelector: {}, policyTypes: ["Egress"] }),
        knp("prod", "web-from-dev", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }] }] }),
        // baseline: prod not TCP 2222 of 192.0.2.0/24 (its node's uplink), web not TCP 81 from prod pods
        cnp("base", "baseline", 1, inNs("prod"), { egress: [rule("deny", [block("192.0.2.0/24"), block("fd00:192::/64")], [tcp(2222)])], ingress: [rule("deny", [{ kind: "pods", pods: inNs("prod") }], [tcp(81)])] }),
      ];
      for (const f of [4, 6] as const) await apply(f, ownNode);
      const ev = PolicyEvaluator.fromModel(modelOf(ownNode), { sctpSupported: false });
      // A Service address that the node DNATs to web, masqueraded when web is the client (kube-proxy's hairpin).
      const VIP = { 4: "10.96.0.10", 6: "fd00:96::10" } as const;
      const nat = (f: Family, ...args: string[]): Promise<string> => sh(nodeNs, `ip${f === 6 ? "6" : ""}tables-${mode}`, "-t", "nat", ...args);
      for (const f of [4, 6] as const) {
        const addr = web.ips[f === 4 ? 0 : 1] as string;
        await nat(f, "-A", "PREROUTING", "-d", VIP[f], "-p", "tcp", "-j", "DNAT", "--to-destination", f === 4 ? addr : `[${addr}]`);
        await nat(f, "-A", "POSTROUTING", "-s", addr, "-d", addr, "-j", "MASQUERADE");
      }
      try {
        for (const f of [4, 6] as const) {
          const i = f === 4 ? 0 : 1;
          const cases: { from: PodEndpoint; dst: string; port: number; want: "open" | "blocked"; why: string; hairpin?: boolean }[] = [
            { from: tool, dst: UPLINK_IP[f], port: 80, want: "blocked", why: "Admin nodes Deny: the pod's own node too" },
            { from: tool, dst: GATEWAY[f], port: 80, want: "open", why: "an address of the host that is not the Node's: no nodes peer matches it" },
            { from: db, dst: UPLINK_IP[f], port: 22, want: "blocked", why: "Admin networks Deny of its own node's address" },
            { from: db, dst: UPLINK_IP[f], port: 80, want: "open", why: "NetworkPolicy isolates db's egress, but does not judge its own node" },
            { from: db, dst: OUTSIDE[f], port: 80, want: "blocked", why: "elsewhere NetworkPolicy isolates db's egress" },
            { from: web, dst: UPLINK_IP[f], port: 2222, want: "blocked", why: "Baseline Deny: no NetworkPolicy judges traffic to its own node, so the baseline does" },
            { from: web, dst: VIP[f], port: 80, want: "open", why: "through a Service back to itself: web-from-dev (which isolates web) cannot block it", hairpin: true },
            { from: web, dst: VIP[f], port: 81, want: "blocked", why: "through a Service back to itself: the Baseline Deny of prod pods on TCP 81", hairpin: true },
            { from: db, dst: web.ips[i] as string, port: 80, want: "blocked", why: "another pod of prod: NetworkPolicy isolates db's egress" },
          ];
          for (const c of cases) {
            const src = c.from.ips[i] as string;
            // The evaluator sees the connection as the filter table does: after the DNAT, before the masquerade.
            const predicted = ev.evaluate({ src, dst: c.hairpin ? src : c.dst, protocol: "TCP", port: c.port, hairpin: c.hairpin }).allowed ? "open" : "blocked";
            assert.equal(predicted, c.want, `evaluator, IPv${f}: ${c.why}`);
            assert.equal(await tcpProbe(podNs(c.from), c.dst, c.port), c.want, `${src} -> ${c.dst}:${c.port}: ${c.why}`);
          }
          assert.equal(await tcpProbe(outNs, web.ips[i] as string, 80), "blocked", `IPv${f}: web-from-dev isolates web (the hairpin above was not let in by chance)`);
        }
      } finally {
        for (const f of [4, 6] as const) {
          await nat(f, "-F", "PREROUTING");
          await nat(f, "-F", "POSTROUTING");
        }
      }
    });

    test("removeAll leaves no chain and no set of ours", async () => {
      for (const dp of dps.values()) await dp.removeAll();
      for (const f of [4, 6] as const) for (const t of ["raw", "filter"]) assert.doesNotMatch(await save(f, false, t), /SLUICE-|slc-/);
      assert.doesNotMatch(await nsExec(nodeNs, "ipset", ["list", "-n"]), /slc/);
    });
  });
}
