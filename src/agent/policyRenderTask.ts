/**
 * The policy render as one task for the agent's worker thread (sluice-worker): the model
 * of a snapshot (buildPolicyModel) and its chains and ipsets per family
 * (renderPolicyModel). Running it there keeps the agent's event loop free however large
 * the cluster or its policies are: /healthz, watches and timers go on while it runs.
 *
 * The thread keeps state from call to call, so that a change costs what it touches:
 * - the snapshot arrives as a delta against the previous one (renderExchange.ts), and
 *   the thread's mirror keeps every unchanged object as the same object;
 * - the model translates only changed policy objects (PolicyIrMemo) and the render
 *   recomputes only what a change invalidates (RenderMemo);
 * - the render goes back as a delta too, which the engine's mirror applies.
 * A delta that does not follow what the thread holds (a new thread) is answered with
 * "resync", and the engine sends everything.
 *
 * Messages cross the boundary as JSON text: writing and parsing JSON costs the event loop
 * about half what a structured clone does. modelInputOf leaves out of a snapshot what the
 * model does not read (Pod and Namespace objects: the endpoints and namespaces already
 * carry what policy needs of them).
 */
import type { PolicySnapshot } from "../model/policySnapshot.js";
import type { Family } from "../model/ip.js";
import { type PolicyModelInput, PolicyIrMemo, buildPolicyModel } from "../policy/model.js";
import { renderPolicyModel } from "../render/policy.js";
import type { PolicyRender } from "../render/policyContract.js";
import { RenderMemo } from "../render/renderMemo.js";
import { type ModelDelta, ModelMirror, type RenderDelta, RenderSender } from "./renderExchange.js";

export const RENDER_POLICY_TASK = "render-policy";

export interface RenderPolicyInput {
  model: PolicyModelInput;
  nodeName: string;
  families: Family[];
  sctpSupported: boolean;
}

/** What the engine sends: the snapshot as a delta. */
export interface RenderPolicyRequest {
  model: ModelDelta;
  nodeName: string;
  families: Family[];
  sctpSupported: boolean;
}

/** What the thread answers: the renders as deltas, or "resync" (send everything). */
export type RenderPolicyReply = { resync: true } | ({ resync?: undefined } & Omit<RenderPolicyOutput, "renders"> & { renders: Array<[Family, RenderDelta]> });

export interface RenderPolicyOutput {
  renders: Array<[Family, PolicyRender]>;
  /** The model's warnings (the engine logs new ones). */
  warnings: string[];
  policies: number;
  /** Time spent in the thread. */
  ms: number;
}

/** What buildPolicyModel reads of a snapshot. */
export function modelInputOf(s: PolicySnapshot): PolicyModelInput {
  const objects: Record<string, PolicyModelInput["objects"][string]> = {};
  for (const [kind, list] of Object.entries(s.objects)) if (kind !== "Pod" && kind !== "Namespace" && kind !== "NetworkPolicy") objects[kind] = list;
  return { endpoints: s.endpoints, namespaces: s.namespaces, networkPolicies: s.networkPolicies, objects, refused: s.refused };
}

/** What crosses the thread boundary both ways: a RenderPolicyInput or RenderPolicyOutput as JSON. */
export interface JsonText {
  json: string;
}

/** The thread's state: the snapshot mirror, the model's IR memo, the render memos and senders. */
const mirror = new ModelMirror();
let irMemo = new PolicyIrMemo();
const senders = new Map<Family, RenderSender>();

/** The task (runs in sluice-worker). */
export function renderPolicyTask(input: JsonText): JsonText {
  const req = JSON.parse(input.json) as RenderPolicyRequest;
  const model = mirror.apply(req.model);
  if (model === "resync") return { json: JSON.stringify({ resync: true } satisfies RenderPolicyReply) };
  if (req.model.base === 0) {
    // Everything anew: what was sent back before is unknown to the engine's fresh mirror.
    senders.clear();
    irMemo = new PolicyIrMemo();
  }
  const out = renderPolicy({ model, nodeName: req.nodeName, families: req.families, sctpSupported: req.sctpSupported }, irMemo);
  const renders = out.renders.map(([family, r]): [Family, RenderDelta] => {
    let sender = senders.get(family);
    if (!sender) senders.set(family, (sender = new RenderSender()));
    return [family, sender.next(r)];
  });
  return { json: JSON.stringify({ ...out, renders } satisfies RenderPolicyReply) };
}

/**
 * The thread's memo per family (and SCTP capability): what one render lends the next
 * (renderMemo.ts). The thread serves one agent, so one memo per family is all there is.
 */
const memos = new Map<string, RenderMemo>();

function memoFor(family: Family, sctp: boolean): RenderMemo {
  const key = `${family}|${sctp}`;
  let m = memos.get(key);
  if (!m) {
    for (const k of memos.keys()) if (k.startsWith(`${family}|`)) memos.delete(k); // the capability changed: the old one is of no use
    m = new RenderMemo(family, sctp);
    memos.set(key, m);
  }
  return m;
}

export function renderPolicy(input: RenderPolicyInput, ir?: PolicyIrMemo): RenderPolicyOutput {
  const started = performance.now();
  const model = buildPolicyModel(input.model, ir);
  const renders = input.families.map((family): [Family, PolicyRender] => [family, renderPolicyModel({ family, nodeName: input.nodeName, model, sctpSupported: input.sctpSupported, memo: ir ? memoFor(family, input.sctpSupported) : undefined })]);
  return { renders, warnings: model.warnings, policies: model.policies.length, ms: performance.now() - started };
}
