/**
 * Kubernetes label selectors (metav1.LabelSelector), evaluated exactly as the API
 * machinery does (LabelSelectorAsSelector):
 *
 * - `matchLabels: {k: v}` means "k In (v)"; every entry and every expression must hold (AND);
 * - `In`: the key is present and its value is one of the values;
 * - `NotIn`: the key is absent, or its value is none of the values;
 * - `Exists`: the key is present (any value, including "");
 * - `DoesNotExist`: the key is absent;
 * - the empty selector `{}` matches everything.
 *
 * (A nil selector matches nothing in Kubernetes; callers decide what an absent selector
 * means, e.g. an absent `podSelector` in a peer means "all pods".)
 *
 * The canonical form turns equivalent selectors into one string (`matchLabels {a: b}` and
 * `a In [b]` are the same requirement), so it can name ipsets and memoize matches.
 */
import type { LabelSelector } from "../config/k8sSchemas.js";

export type Labels = Readonly<Record<string, string>>;

export type Operator = "In" | "NotIn" | "Exists" | "DoesNotExist";

/** One requirement of a normalized selector; `values` sorted and de-duplicated. */
export interface Requirement {
  key: string;
  operator: Operator;
  values: readonly string[];
}

const has = (labels: Labels, key: string): boolean => Object.prototype.hasOwnProperty.call(labels, key);

// Selectors are treated as immutable values (they come from parsed objects), so the
// normalized form is cached per object.
const reqCache = new WeakMap<LabelSelector, readonly Requirement[]>();
const textCache = new WeakMap<LabelSelector, string>();

/** The requirements of a selector, sorted by key and text, duplicates removed. `[]` = everything. */
export function requirementsOf(sel: LabelSelector | undefined): readonly Requirement[] {
  if (!sel) return [];
  let hit = reqCache.get(sel);
  if (!hit) {
    hit = computeRequirements(sel);
    reqCache.set(sel, hit);
  }
  return hit;
}

function computeRequirements(sel: LabelSelector): Requirement[] {
  const out: Requirement[] = [];
  for (const [key, value] of Object.entries(sel?.matchLabels ?? {})) out.push({ key, operator: "In", values: [value] });
  for (const e of sel?.matchExpressions ?? []) {
    const values = e.operator === "In" || e.operator === "NotIn" ? [...new Set(e.values ?? [])].sort() : [];
    out.push({ key: e.key, operator: e.operator, values });
  }
  const seen = new Set<string>();
  return out
    .map((r) => ({ r, text: requirementText(r) }))
    .sort((a, b) => (a.r.key < b.r.key ? -1 : a.r.key > b.r.key ? 1 : a.text < b.text ? -1 : a.text > b.text ? 1 : 0))
    .filter(({ text }) => (seen.has(text) ? false : (seen.add(text), true)))
    .map(({ r }) => r);
}

/** Kubernetes' own selector syntax: `k=v`, `k in (a,b)`, `k!=v`, `k notin (a,b)`, `k`, `!k`. */
export function requirementText(r: Requirement): string {
  switch (r.operator) {
    case "In":
      return r.values.length === 1 ? `${r.key}=${r.values[0] as string}` : `${r.key} in (${r.values.join(",")})`;
    case "NotIn":
      return r.values.length === 1 ? `${r.key}!=${r.values[0] as string}` : `${r.key} notin (${r.values.join(",")})`;
    case "Exists":
      return r.key;
    case "DoesNotExist":
      return `!${r.key}`;
  }
}

// A long value list is looked up in a Set (built once per list), so matching stays linear
// in pods however many values a selector lists (the API bounds them only by object size).
const LONG_VALUES = 16;
const valueSets = new WeakMap<readonly string[], ReadonlySet<string>>();
function listed(values: readonly string[], v: string): boolean {
  if (values.length < LONG_VALUES) return values.includes(v);
  let set = valueSets.get(values);
  if (!set) {
    set = new Set(values);
    valueSets.set(values, set);
  }
  return set.has(v);
}

export function requirementMatches(r: Requirement, labels: Labels): boolean {
  switch (r.operator) {
    case "In":
      return has(labels, r.key) && listed(r.values, labels[r.key] as string);
    case "NotIn":
      return !has(labels, r.key) || !listed(r.values, labels[r.key] as string);
    case "Exists":
      return has(labels, r.key);
    case "DoesNotExist":
      return !has(labels, r.key);
  }
}

export function requirementsMatch(reqs: readonly Requirement[], labels: Labels): boolean {
  for (const r of reqs) if (!requirementMatches(r, labels)) return false;
  return true;
}

/** Does `sel` select an object with these labels? `{}` (or undefined) selects everything. */
export function selectorMatches(sel: LabelSelector | undefined, labels: Labels): boolean {
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) if (!has(labels, k) || labels[k] !== v) return false;
  for (const e of sel?.matchExpressions ?? []) {
    if (!requirementMatches({ key: e.key, operator: e.operator, values: e.values ?? [] }, labels)) return false;
  }
  return true;
}

/** True when the selector has no requirement at all, i.e. selects everything. */
export function selectsEverything(sel: LabelSelector | undefined): boolean {
  return requirementsOf(sel).length === 0;
}

/**
 * The canonical text of a selector: its requirements in Kubernetes syntax, sorted, joined
 * with ",". The empty selector is "" (everything). Label keys and values cannot contain
 * spaces, commas, parentheses, '=' or '!', so the text is unambiguous.
 */
export function canonicalSelector(sel: LabelSelector | undefined): string {
  if (!sel) return "";
  let hit = textCache.get(sel);
  if (hit === undefined) {
    hit = requirementsOf(sel).map(requirementText).join(",");
    textCache.set(sel, hit);
  }
  return hit;
}

/** The selector rebuilt from its canonical requirements (matchExpressions only). */
export function normalizeSelector(sel: LabelSelector | undefined): LabelSelector {
  const reqs = requirementsOf(sel);
  if (reqs.length === 0) return {};
  return { matchExpressions: reqs.map((r) => (r.values.length ? { key: r.key, operator: r.operator, values: [...r.values] } : { key: r.key, operator: r.operator })) };
}
