/**
 * Policy size -> processing time (issue 11, item 2): one NetworkPolicy from 16 KiB to the
 * API's 1.5 MiB object limit, in three shapes:
 *
 * - copies: copies of two peers and two ports, the shape that used to cost peers x ports
 *   (the "terms before" column: what the renderer's loops were for the same policy);
 * - peers: distinct /32 blocks and two ports: terms grow with the size, the renderer
 *   really works up to MAX_POLICY_TERMS, past it the policy fails closed (isolates,
 *   allows nothing);
 * - grid: distinct /32 blocks and as many distinct ports, which no dedupe shrinks
 *   (terms grow with the square of the size): it fails closed from the smallest size.
 *
 * Per size and shape, the steps the agent takes, each timed n times: validate (zod, what
 * sluice-worker runs for a large object), model (copies dropped, IR, dedupe, budget:
 * buildPolicyModel) and render (renderPolicyModel, one family), and their total. The same
 * run's JSON.parse of the same text is the baseline: total / parse staying flat across
 * sizes, like ms per MiB, is what linear means. Last, the event loop's longest delay
 * (monitorEventLoopDelay) while the worker thread validates the object: what /healthz
 * sees of it.
 *
 * Pure and in-process (no root, no kernel). Prints figures; asserts nothing.
 * Run: npm run build && node build/bench/policyRenderSize.js [--runs 7]
 */
import { cpus, loadavg } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type NetworkPolicyObject } from "../src/config/k8sSchemas.js";
import { validateText, validateTextOffThread } from "../src/config/offThreadValidation.js";
import { MAX_OBJECT_BYTES, networkPolicyKind } from "../src/config/resourceKinds.js";
import { hostIfaceName } from "../src/model/endpoint.js";
import { buildPolicyModel } from "../src/policy/model.js";
import { MAX_POLICY_TERMS } from "../src/policy/policyBudget.js";
import { renderPolicyModel } from "../src/render/policy.js";
import { WorkerThread } from "../src/util/workerThread.js";

type Shape = "copies" | "peers" | "grid";
const SIZES_KIB = [16, 64, 128, 256, 512, 1024, 1536];
const RUNS = Number(process.argv[process.argv.indexOf("--runs") + 1] || 7) || 7;

const endpoints = [
  { namespace: "prod", pod: "web", node: "n1", hostIface: hostIfaceName("prod", "web"), ips: ["10.244.1.2"], labels: { app: "web" }, ports: [] },
  { namespace: "prod", pod: "client", node: "n2", hostIface: hostIfaceName("prod", "client"), ips: ["10.244.2.3"], labels: { app: "client" }, ports: [] },
];
const namespaces = [{ name: "prod", labels: { team: "a" } }];

/** The policy's JSON, at most `bytes` long, and how many peers and ports it lists. */
function policyText(shape: Shape, bytes: number): { text: string; peers: number; ports: number } {
  const block = (i: number): unknown => ({ ipBlock: { cidr: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32` } });
  const peer = (i: number): unknown => (shape === "copies" ? [{ podSelector: { matchLabels: { app: "client" } } }, { namespaceSelector: { matchLabels: { team: "a" } } }][i % 2] : block(i));
  const port = (i: number): unknown => (shape === "grid" ? { protocol: ["TCP", "UDP", "SCTP"][Math.floor(i / 65535) % 3], port: 1 + (i % 65535) } : { protocol: "TCP", port: i % 2 ? 443 : 80 });
  const portsOf = (n: number): number => (shape === "peers" ? 2 : n);
  const make = (n: number): string =>
    JSON.stringify({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "big", namespace: "prod" }, spec: { podSelector: { matchLabels: { app: "web" } }, ingress: [{ from: Array.from({ length: n }, (_, i) => peer(i)), ports: Array.from({ length: portsOf(n) }, (_, i) => port(i)) }] } });
  const per = (make(2000).length - make(1000).length) / 1000;
  let n = Math.max(1, Math.floor((bytes - make(0).length) / per));
  let text = make(n);
  while (text.length > bytes && n > 1) text = make((n = Math.floor(n * 0.99)));
  return { text, peers: n, ports: portsOf(n) };
}

interface Stats {
  n: number;
  median: number;
  p99: number;
  max: number;
}
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
  return { n: s.length, median: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN };
}
// A gc() without --expose-gc on the command line (run-bench starts every benchmark alike).
setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;

const time = (fn: () => unknown): number => {
  const t = performance.now();
  fn();
  return performance.now() - t;
};

interface Row {
  shape: Shape;
  kib: number;
  before: number;
  after: number;
  failedClosed: boolean;
  parse: Stats;
  validate: Stats;
  model: Stats;
  render: Stats;
  total: Stats;
  loopMax: number;
}

async function measure(thread: WorkerThread, shape: Shape, kib: number): Promise<Row> {
  const { text, peers, ports } = policyText(shape, Math.min(kib * 1024, MAX_OBJECT_BYTES));
  const samples = { parse: [] as number[], validate: [] as number[], model: [] as number[], render: [] as number[], total: [] as number[] };
  let after = 0;
  let failedClosed = false;
  for (let i = 0; i <= RUNS; i++) {
    const parse = time(() => JSON.parse(text));
    let np: NetworkPolicyObject | undefined;
    const validate = time(() => {
      const v = validateText(networkPolicyKind, text);
      if (!v.ok) throw new Error("the benchmark's policy is invalid");
      np = v.object;
    });
    let model: ReturnType<typeof buildPolicyModel> | undefined;
    const modelMs = time(() => (model = buildPolicyModel({ endpoints, namespaces, networkPolicies: [np as NetworkPolicyObject], objects: {} })));
    const m = model as ReturnType<typeof buildPolicyModel>;
    const render = time(() => renderPolicyModel({ family: 4, nodeName: "n1", model: m, sctpSupported: true }));
    const rule = m.policies[0]?.ingress?.[0];
    after = rule ? rule.peers.length * (rule.ports === "all" ? 1 : rule.ports.length) : 0;
    failedClosed = m.warnings.some((w) => w.includes("fails closed"));
    if (i === 0) continue; // warm-up
    samples.parse.push(parse);
    samples.validate.push(validate);
    samples.model.push(modelMs);
    samples.render.push(render);
    samples.total.push(validate + modelMs + render);
  }
  // The event loop while the worker thread validates the same text (as the agent does),
  // after a full GC here, so that the garbage of the timing runs above is not counted.
  collectGarbage();
  const h = monitorEventLoopDelay({ resolution: 1 });
  const tick = setInterval(() => undefined, 1);
  h.enable();
  for (let i = 0; i < 3; i++) await validateTextOffThread(thread, networkPolicyKind, text);
  h.disable();
  clearInterval(tick);
  return { shape, kib: Math.round(text.length / 1024), before: peers * ports, after, failedClosed, parse: stats(samples.parse), validate: stats(samples.validate), model: stats(samples.model), render: stats(samples.render), total: stats(samples.total), loopMax: h.max / 1e6 };
}

async function main(): Promise<void> {
  const c = cpus();
  console.log(`NetworkPolicy size -> processing time, n=${RUNS} per cell after a warm-up (${c.length} x ${c[0]?.model ?? "cpu"}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(" ")})`);
  console.log(`MAX_POLICY_TERMS ${MAX_POLICY_TERMS}; times in ms: median / p99 / max; "x parse" = total median / JSON.parse median of the same text (same run)`);
  const head = ["shape", "KiB", "terms before", "terms after", "validate", "model", "render", "total", "ms/MiB", "x parse", "loop max"];
  console.log(head.map((h, i) => (i === 0 ? h.padEnd(9) : h.padStart(i >= 4 && i <= 7 ? 22 : 12))).join(" "));
  const thread = new WorkerThread("bench-validate");
  const cell = (s: Stats): string => `${s.median.toFixed(1)} / ${s.p99.toFixed(1)} / ${s.max.toFixed(1)}`.padStart(22);
  try {
    for (const shape of ["copies", "peers", "grid"] as const) {
      for (const kib of SIZES_KIB) {
        const r = await measure(thread, shape, kib);
        const row = [
          r.shape.padEnd(9),
          String(r.kib).padStart(12),
          r.before.toLocaleString("en-US").padStart(12),
          (r.failedClosed ? "0 (closed)" : r.after.toLocaleString("en-US")).padStart(12),
          cell(r.validate),
          cell(r.model),
          cell(r.render),
          cell(r.total),
          ((r.total.median * 1024) / r.kib).toFixed(0).padStart(12),
          (r.total.median / r.parse.median).toFixed(1).padStart(12),
          `${r.loopMax.toFixed(1)} ms`.padStart(12),
        ];
        console.log(row.join(" "));
      }
    }
  } finally {
    await thread.close();
  }
  console.log("terms before: peers x ports as listed (what the renderer looped over before copies were dropped); after: what it loops over now.");
  console.log("loop max: the event loop's longest delay while sluice-worker validated the object 3 times, after a full GC (what /healthz waits at most).");
}

void main();
