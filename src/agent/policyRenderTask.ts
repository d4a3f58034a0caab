/**
 * The policy render as one pure task for the agent's worker thread (sluice-worker): the
 * model of a snapshot (buildPolicyModel) and its chains and ipsets per family
 * (renderPolicyModel). Running it there keeps the agent's event loop free however large
 * the cluster or its policies are: /healthz, watches and timers go on while it runs.
 *
 * Input and output cross the thread boundary as JSON text: writing and parsing JSON costs
 * the event loop about half what a structured clone does (a 1.5 MiB policy: ~6 ms to write,
 * against ~15 ms to serialize). modelInputOf leaves out of a snapshot what the model does
 * not read (Pod and Namespace objects: the endpoints and namespaces already carry what
 * policy needs of them).
 */
import type { PolicySnapshot } from "../model/policySnapshot.js";
import type { Family } from "../model/ip.js";
import { type PolicyModelInput, buildPolicyModel } from "../policy/model.js";
import { renderPolicyModel } from "../render/policy.js";
import type { PolicyRender } from "../render/policyContract.js";
import { RenderMemo } from "../render/renderMemo.js";

export const RENDER_POLICY_TASK = "render-policy";

export interface RenderPolicyInput {
  model: PolicyModelInput;
  nodeName: string;
  families: Family[];
  sctpSupported: boolean;
}

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

/** The task (runs in sluice-worker). */
export function renderPolicyTask(input: JsonText): JsonText {
  return { json: JSON.stringify(renderPolicy(JSON.parse(input.json) as RenderPolicyInput)) };
}

/**
 * The thread's memo per family (and SCTP capability): what one render lends the next
 * (renderMemo.ts), so a change costs what it touches. The thread serves one agent, so one
 * memo per family is all there is; a restarted thread starts without.
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

export function renderPolicy(input: RenderPolicyInput): RenderPolicyOutput {
  const started = performance.now();
  const model = buildPolicyModel(input.model);
  const renders = input.families.map((family): [Family, PolicyRender] => [family, renderPolicyModel({ family, nodeName: input.nodeName, model, sctpSupported: input.sctpSupported, memo: memoFor(family, input.sctpSupported) })]);
  return { renders, warnings: model.warnings, policies: model.policies.length, ms: performance.now() - started };
}
