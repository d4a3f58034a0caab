/**
 * Runs the scenarios against a PolicyHarness: builds the x/y/z × a/b/c model, performs
 * each step's actions, waits the settle time, probes the 9×9 matrix on the step's port
 * and protocol (TCP, UDP or ICMP), and compares it with the step's hand-written grid.
 * Then it asks `sluicectl explain`'s library, reading the same etcd, for the same
 * matrix and the step's other probes: what explain says must be what the probes saw.
 *
 * Timing contract: a change must be in force on every node within 600 ms. After the
 * last action of a step returns, the runner waits until every node's agent reports the
 * change in force (the harness's inForce: a barrier write, then the nodes' policy status),
 * at most `settleMs` (600 ms), and probes ONCE; there is no retry window, so an agent that
 * says "in force" before its kernel is gets caught. Where the harness cannot tell (the
 * Kubernetes API's per-collection watches), or pods were created or deleted (their
 * endpoints travel through their own node's agent, at revisions the runner does not
 * know), it waits the whole `settleMs`. Only when that probe differs does it probe again
 * after `diagnoseMs`, to tell "too slow" from "wrong" in the failure message; the step
 * fails either way.
 *
 * Within one probe: a TCP probe sends one SYN (the kernel's first retransmission comes
 * after 1 s, past the 600 ms probe timeout), so TCP is judged exactly at settle time. A UDP probe
 * (the sandbox pod server's) resends its datagram every 200 ms until the timeout, so a
 * UDP "connected" may come from a datagram sent up to 600 ms after settle time: a bounded
 * window of one probe timeout, for allows only (a datagram that gets through before a
 * deny lands is caught as connected).
 */
import { type Matrix, type Protocol, describeDiff, diffMatrices, formatMatrix, parseMatrix } from "../../helpers/policyMatrix.js";
import type { PolicyHarness } from "./harness.js";
import { NAMESPACES, NODES, POD_KEYS, namespaceLabels, podLabels, splitKey, HOME_NODE, CONTAINER_PORTS } from "./model.js";
import { type Scenario, type Step, hasActions, stepTitle } from "./scenarios.js";
import { ClusterState, parseObjectKey } from "./state.js";

export interface RunnerOptions {
  /** Wait after a step's actions before probing: the one-second convergence budget. */
  settleMs: number;
  /** How long a probe waits for its echo before calling the pair blocked. */
  probeTimeoutMs: number;
  /** On a mismatch, probe again this much later (diagnosis only; the step still fails). */
  diagnoseMs: number;
  log: (msg: string) => void;
}

// 600 ms each (1 s until the agents applied a change in well under 300 ms on this 2-core
// machine, with six policy suites to run: the same contract, tighter, in half the time).
export const DEFAULT_RUNNER_OPTIONS: Omit<RunnerOptions, "log"> = { settleMs: 600, probeTimeoutMs: 600, diagnoseMs: 3000 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const sameLabels = (a: Record<string, string>, b: Record<string, string>): boolean => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

export class ScenarioFailure extends Error {}

export class PolicySuiteRunner {
  private stateOrUndefined: ClusterState | undefined;
  /** Pods were created or deleted since the last settle(). */
  private podsChanged = false;

  constructor(
    private readonly h: PolicyHarness,
    private readonly o: RunnerOptions,
  ) {}

  get state(): ClusterState {
    if (!this.stateOrUndefined) throw new Error("runner not set up");
    return this.stateOrUndefined;
  }

  /** Namespaces x, y, z and their pods a, b, c (a on node-1, b on node-2, c on node-3). */
  async setup(): Promise<void> {
    const subnets: Record<string, string> = {};
    for (const n of NODES) subnets[n] = await this.h.nodeSubnet(n);
    const st = new ClusterState({ network: this.h.network(), subnets, hosts: await this.h.hostAddresses() });
    this.stateOrUndefined = st;
    for (const ns of ClusterState.initialNamespaces()) {
      await this.h.createNamespace(ns.name, ns.labels);
      st.namespaces.set(ns.name, { name: ns.name, labels: { ...ns.labels } });
    }
    // Nodes in parallel, one pod at a time on each node (address allocation is per node).
    const pods = ClusterState.initialPods();
    await Promise.all(
      NODES.map(async (node) => {
        for (const p of pods.filter((x) => x.node === node)) {
          const ip = await this.h.createPod({ namespace: p.namespace, name: p.name, node: p.node, labels: p.labels, ports: p.ports });
          st.pods.set(p.key, { ...p, labels: { ...p.labels }, ip });
          this.podsChanged = true;
        }
      }),
    );
    this.o.log(`pods: ${POD_KEYS.map((k) => `${k}=${st.pod(k).ip}@${st.pod(k).node}`).join(" ")}; subnets: ${Object.entries(subnets).map(([n, s]) => `${n}=${s}`).join(" ")}`);
  }

  /** Back to the model's clean state: no policies, initial labels, no extra namespaces, pods at home. Returns what it had to undo. */
  async reset(): Promise<string[]> {
    const st = this.state;
    const undone: string[] = [];
    for (const key of [...st.policies.keys()]) {
      const ref = parseObjectKey(key);
      if (ref.namespace === undefined || st.namespaces.has(ref.namespace)) await this.h.deleteObject(ref);
      st.policies.delete(key);
      undone.push(`${ref.kind === "NetworkPolicy" ? "policy " : ""}${key}`);
    }
    for (const ns of [...st.namespaces.keys()]) {
      if ((NAMESPACES as readonly string[]).includes(ns)) continue;
      await this.h.deleteNamespace(ns);
      st.deleteNamespace(ns);
      this.podsChanged = true;
      undone.push(`namespace ${ns}`);
    }
    for (const ns of NAMESPACES) {
      const cur = st.namespaces.get(ns);
      if (cur && !sameLabels(cur.labels, namespaceLabels(ns))) {
        await this.h.setNamespaceLabels(ns, namespaceLabels(ns));
        cur.labels = namespaceLabels(ns);
        undone.push(`labels of namespace ${ns}`);
      }
    }
    for (const key of POD_KEYS) {
      const p = st.pod(key);
      const home = HOME_NODE[p.name] as string;
      if (p.node !== home) {
        await this.recreatePod(key, home, podLabels(p.name));
        undone.push(`pod ${key} moved home`);
      } else if (!sameLabels(p.labels, podLabels(p.name))) {
        await this.h.setPodLabels(p.namespace, p.name, podLabels(p.name));
        p.labels = podLabels(p.name);
        undone.push(`labels of pod ${key}`);
      }
    }
    return undone;
  }

  private async recreatePod(key: string, node: string, labels: Record<string, string>): Promise<void> {
    const st = this.state;
    const p = st.pod(key);
    this.podsChanged = true;
    await this.h.deletePod(p.namespace, p.name);
    st.pods.delete(key);
    const ip = await this.h.createPod({ namespace: p.namespace, name: p.name, node, labels, ports: CONTAINER_PORTS });
    st.pods.set(key, { ...p, node, labels: { ...labels }, ip });
    this.o.log(`  ${key} recreated on ${node} with address ${ip} (was ${p.ip} on ${p.node})`);
  }

  private async perform(step: Step): Promise<void> {
    const st = this.state;
    for (const ns of step.createNamespace ?? []) {
      await this.h.createNamespace(ns.name, ns.labels);
      st.namespaces.set(ns.name, { name: ns.name, labels: { ...ns.labels } });
      for (const p of ns.pods) {
        this.podsChanged = true;
        const ip = await this.h.createPod({ namespace: ns.name, name: p.name, node: p.node, labels: p.labels, ports: CONTAINER_PORTS });
        st.pods.set(`${ns.name}/${p.name}`, { key: `${ns.name}/${p.name}`, namespace: ns.name, name: p.name, node: p.node, labels: { ...p.labels }, ip, ports: [...CONTAINER_PORTS] });
      }
    }
    for (const r of step.recreatePod ?? []) await this.recreatePod(r.pod, r.node, { ...st.pod(r.pod).labels });
    if (step.apply) {
      const filled = st.fill(step.apply);
      st.applyPolicies(step.apply); // recorded first, so a reset removes whatever got through
      await this.h.applyPolicyYaml(filled);
    }
    for (const l of step.label ?? []) {
      const labels = st.relabel(l);
      if (l.pod !== undefined) {
        const { namespace, pod } = splitKey(l.pod);
        await this.h.setPodLabels(namespace, pod, labels);
      } else {
        await this.h.setNamespaceLabels(l.ns as string, labels);
      }
    }
    for (const key of step.delete ?? []) {
      await this.h.deleteObject(parseObjectKey(key));
      st.policies.delete(key);
    }
    for (const ns of step.deleteNamespace ?? []) {
      this.podsChanged = true;
      await this.h.deleteNamespace(ns);
      st.deleteNamespace(ns);
    }
  }

  /**
   * Waits for what was written to be in force (see the timing contract above); returns
   * how long it waited and, when the deadline passed first, which nodes were behind.
   */
  async settle(): Promise<{ ms: number; note: string }> {
    const pods = this.podsChanged;
    this.podsChanged = false;
    if (pods || !this.h.inForce) {
      await sleep(this.o.settleMs);
      return { ms: this.o.settleMs, note: pods ? " (pods changed: the whole settle time)" : " (the harness cannot tell: the whole settle time)" };
    }
    const r = await this.h.inForce(this.o.settleMs);
    return { ms: r.ms, note: r.late.length ? ` (not reported in force by ${r.late.join(", ")})` : "" };
  }

  async probeMatrix(port: number, protocol: Protocol): Promise<Matrix> {
    const st = this.state;
    const reqs = POD_KEYS.flatMap((from) => POD_KEYS.map((to) => ({ from, toIp: st.pod(to).ip, port, protocol })));
    const res = await this.h.probe(reqs, this.o.probeTimeoutMs);
    return { pods: [...POD_KEYS], cells: POD_KEYS.map((_, i) => POD_KEYS.map((__, j) => res[i * POD_KEYS.length + j] as boolean)) };
  }

  /**
   * Probes the step's matrix plus its node, extra and host probes, then asks explain for
   * the same; `pairs` lists every disagreement with the grid, `explain` every one
   * between explain and the probes (both empty when all agree).
   */
  private async check(step: Step, title: string): Promise<{ report: string; pairs: string[]; explain: string[] }> {
    const st = this.state;
    const expected = parseMatrix(step.expected, POD_KEYS);
    const hostIp = (h: string): string => {
      const ip = st.addresses.hosts[h];
      if (ip === undefined) throw new Error(`${title}: no host ${h} (have ${Object.keys(st.addresses.hosts).join(", ")})`);
      return ip;
    };
    const nodeReqs = (step.fromNodes ?? []).map((n) => ({ node: n.node, toIp: st.pod(n.to).ip, port: step.port, protocol: step.protocol }));
    const extraReqs = [...(step.extra ?? []).map((e) => ({ from: e.from, toIp: st.pod(e.to).ip, label: `${e.from} -> ${e.to}`, expect: e.expect })), ...(step.hosts ?? []).map((h) => ({ from: h.from, toIp: hostIp(h.host), label: `${h.from} -> ${h.host} (${hostIp(h.host)})`, expect: h.expect }))];
    // explain reads the datastore while the probes run: nothing writes to it meanwhile.
    const explained = this.h.explain?.({ pods: POD_KEYS, port: step.port, protocol: step.protocol, pairs: extraReqs });
    explained?.catch(() => undefined); // awaited below; not an unhandled rejection while the probes run
    const [observed, nodeRes, extraRes] = await Promise.all([
      this.probeMatrix(step.port, step.protocol),
      nodeReqs.length ? this.h.probeFromNode(nodeReqs, this.o.probeTimeoutMs) : Promise.resolve([]),
      extraReqs.length ? this.h.probe(extraReqs.map((e) => ({ from: e.from, toIp: e.toIp, port: step.port, protocol: step.protocol })), this.o.probeTimeoutMs) : Promise.resolve([]),
    ]);
    const word = (c: boolean | undefined): string => (c ? "connected" : "blocked");
    const pairs = diffMatrices(expected, observed).map((d) => `  ${d.from} -> ${d.to}: expected ${word(d.expected)}, observed ${word(d.observed)}`);
    (step.fromNodes ?? []).forEach((n, i) => {
      if ((n.expect === ".") !== nodeRes[i]) pairs.push(`  ${n.node} (node namespace) -> ${n.to}: expected ${word(n.expect === ".")}, observed ${word(nodeRes[i])}`);
    });
    extraReqs.forEach((e, i) => {
      if ((e.expect === ".") !== extraRes[i]) pairs.push(`  ${e.label}: expected ${word(e.expect === ".")}, observed ${word(extraRes[i])}`);
    });

    // explain, from the same etcd, for what was just probed (node-namespace probes aside).
    const explain: string[] = [];
    if (explained) {
      const ex = await explained;
      const said = (c: boolean | undefined): string => (c ? "allows" : "denies");
      explain.push(...diffMatrices(observed, { pods: [...POD_KEYS], cells: ex.cells }).map((d) => `  ${d.from} -> ${d.to}: probe ${word(d.expected)}, explain ${said(d.observed)}`));
      extraReqs.forEach((e, i) => {
        if (ex.pairs[i] !== extraRes[i]) explain.push(`  ${e.label}: probe ${word(extraRes[i])}, explain ${said(ex.pairs[i])}`);
      });
    }

    const parts: string[] = [];
    if (pairs.length) {
      const grid = describeDiff(title, expected, observed);
      parts.push(grid || `${title}: the 9x9 grid agrees`, ...pairs.filter((p) => !grid.includes(p)));
    }
    if (explain.length) parts.push(`${title}: sluicectl explain disagrees with the probes in ${explain.length} place(s):`, ...explain);
    return { report: parts.join("\n"), pairs, explain };
  }

  async runScenario(sc: Scenario<string>): Promise<void> {
    for (let i = 0; i < sc.steps.length; i++) {
      const step = sc.steps[i] as Step;
      const title = stepTitle(sc, i);
      const t0 = Date.now();
      let settled = "";
      if (hasActions(step)) {
        await this.perform(step);
        const r = await this.settle();
        settled = `, in force after ${r.ms} ms${r.note}`;
      }
      const t1 = Date.now();
      const first = await this.check(step, title);
      this.o.log(`  step ${i + 1}: actions and settle ${t1 - t0} ms${settled}, probes ${Date.now() - t1} ms${first.report ? " — MISMATCH" : ""}`);
      if (first.report) {
        await sleep(this.o.diagnoseMs);
        const later = await this.check(step, `${title}, ${this.o.diagnoseMs} ms later`);
        const all = (c: { pairs: string[]; explain: string[] }): string => [...c.pairs, ...c.explain].join("\n");
        const verdict = !later.report
          ? `correct ${this.o.diagnoseMs} ms later: the change took longer than ${this.o.settleMs} ms to reach every node`
          : all(later) === all(first)
            ? `the same ${later.pairs.length + later.explain.length} disagreement(s) ${this.o.diagnoseMs} ms later: not a matter of timing`
            : `still wrong ${this.o.diagnoseMs} ms later, differently:\n${later.report}`;
        throw new ScenarioFailure(`${first.report}\n${verdict}`);
      }
    }
  }

  /** The clean state must be all-connected (cheap: TCP/80 only, no blocked probe waits). */
  async checkClean(): Promise<string> {
    const m = await this.probeMatrix(80, "TCP");
    const all: Matrix = { pods: m.pods, cells: m.pods.map(() => m.pods.map(() => true)) };
    const d = diffMatrices(all, m);
    return d.length ? `clean state is not all-connected:\n${formatMatrix(m)}` : "";
  }
}
