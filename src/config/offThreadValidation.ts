/**
 * validateObject for large objects, in a worker thread (sluice-worker's "validate-object"
 * task). A NetworkPolicy may take 1.5 MiB of JSON (MAX_OBJECT_BYTES), which zod needs
 * 50-200 ms to check: on the agent's event loop that is long enough for /healthz to miss
 * a liveness probe. Objects under LARGE_OBJECT_BYTES (nearly all) are validated where they
 * are read, as before; what the caller gets back is the same either way.
 *
 * The worker sends the validated object back as JSON text (JSON.parse builds it on the
 * event loop faster than a structured clone does), without the exact copies the kind's
 * withoutCopies drops (a NetworkPolicy's rules, peers and ports are ORed): a policy made
 * of 40,000 copies of two peers reaches the event loop as a policy of two peers.
 */
import type { WorkerThread } from "../util/workerThread.js";
import { type KubeObject, type ResourceKind, type Validated, type ValidationIssue, KINDS, validateObject } from "./resourceKinds.js";

/** Objects of at least this much JSON are validated in the worker thread. */
export const LARGE_OBJECT_BYTES = 64 * 1024;
/** Longer than this (the largest object takes well under a second) and the thread is replaced; the object counts as invalid. */
export const VALIDATE_TIMEOUT_MS = 30_000;
export const VALIDATE_OBJECT_TASK = "validate-object";

export interface ValidateObjectInput {
  /** A registry kind's `kind` (KINDS). */
  kind: string;
  text: string;
}
export type ValidateObjectOutput = { ok: true; json: string; dropped: ValidationIssue[]; copies: number } | { ok: false; issues: ValidationIssue[] } | { ok: false; notJson: string };

/** Validated (`copies`: exact copies the kind's withoutCopies dropped, large objects only), or the text is not JSON at all. */
export type TextValidated<T> = (Validated<T> & { copies?: number }) | { ok: false; notJson: string };

/** The task (runs in sluice-worker): JSON text -> validateObject of the registry kind. */
export function validateObjectTask(input: ValidateObjectInput): ValidateObjectOutput {
  const kind = KINDS.find((k) => k.kind === input.kind);
  if (!kind) throw new Error(`no registry kind ${input.kind}`);
  const v = validateText(kind, input.text);
  if (!v.ok) return v;
  // Copies would only be parsed, held and sent to the render again on the event loop.
  const c = kind.withoutCopies ? kind.withoutCopies(v.object) : { object: v.object, copies: 0 };
  return { ok: true, json: JSON.stringify(c.object), dropped: v.dropped, copies: c.copies };
}

/** validateObject of JSON text, here and now. */
export function validateText<T extends KubeObject>(kind: ResourceKind<T>, text: string): TextValidated<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, notJson: (err as Error).message };
  }
  return validateObject(kind, raw);
}

/**
 * validateText, in `thread` when the text is LARGE_OBJECT_BYTES or more (and the kind is
 * the registry's own, which is what the worker knows).
 */
export async function validateTextOffThread<T extends KubeObject>(thread: WorkerThread, kind: ResourceKind<T>, text: string): Promise<TextValidated<T>> {
  if (text.length < LARGE_OBJECT_BYTES || !KINDS.includes(kind as unknown as ResourceKind)) return validateText(kind, text);
  const out = await thread.call<ValidateObjectOutput>(VALIDATE_OBJECT_TASK, { kind: kind.kind, text } satisfies ValidateObjectInput, { timeoutMs: VALIDATE_TIMEOUT_MS });
  return out.ok ? { ok: true, object: JSON.parse(out.json) as T, dropped: out.dropped, copies: out.copies } : out;
}

/**
 * Whether a parsed object holds more than `limit` values (objects, arrays and scalars),
 * looking at no more than about `limit` of them: how the Kubernetes source tells a large
 * object without writing its JSON. A policy's value takes some 10 to 40 bytes of JSON, so
 * the default (4,096) sends objects of a few tens of KiB and more to the thread.
 */
export function hasMoreValues(v: unknown, limit = 4096): boolean {
  let left = limit;
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (--left < 0) return true;
    const children = Array.isArray(x) ? x : typeof x === "object" && x !== null ? Object.values(x) : [];
    if (children.length > left) return true;
    for (const e of children) stack.push(e);
  }
  return false;
}
