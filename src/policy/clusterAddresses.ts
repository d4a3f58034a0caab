/**
 * The non-pod address peers of the policy IR, resolved once per snapshot for both the
 * renderer (ipset members) and the evaluator (membership tests): `nodes` peers are the
 * addresses of the nodes whose labels match, `networkSets` peers the CIDRs of the matching
 * NetworkSets / GlobalNetworkSets. Answers are memoized by the match's canonical text.
 */
import type { LabelSelector } from "../config/k8sSchemas.js";
import { bitsOf, formatCidr, formatIp, parseCidr, parseIp } from "../model/ip.js";
import type { EndpointIndex } from "./endpointIndex.js";
import { type NetworkSetMatch, namespaceMatchKey } from "./ir.js";
import type { NetworkSetInfo, NodeInfo } from "./model.js";
import { canonicalSelector, requirementsMatch, requirementsOf } from "./selectors.js";

export class ClusterAddresses {
  private readonly nodeMemo = new Map<string, string[]>();
  private readonly setMemo = new Map<string, string[]>();
  private readonly byName = new Map<string, NodeInfo>();

  constructor(
    private readonly nodes: readonly NodeInfo[],
    private readonly networkSets: readonly NetworkSetInfo[],
    private readonly index: EndpointIndex,
  ) {
    for (const n of nodes) this.byName.set(n.name, n);
  }

  node(name: string): NodeInfo | undefined {
    return this.byName.get(name);
  }

  /** Addresses (canonical text, both families, sorted) of the nodes whose labels match. */
  nodeAddresses(sel: LabelSelector): readonly string[] {
    const key = canonicalSelector(sel);
    let hit = this.nodeMemo.get(key);
    if (!hit) {
      const reqs = requirementsOf(sel);
      const out = new Set<string>();
      for (const n of this.nodes) if (requirementsMatch(reqs, n.labels)) for (const a of n.addresses) addCanonical(out, a, false);
      hit = [...out].sort();
      this.nodeMemo.set(key, hit);
    }
    return hit;
  }

  /** CIDRs (canonical text, both families, sorted) of the network sets a match picks. */
  networkSetNets(m: NetworkSetMatch): readonly string[] {
    const key = `${m.namespaces === "global" ? "global" : namespaceMatchKey(m.namespaces)}|${canonicalSelector(m.selector)}`;
    let hit = this.setMemo.get(key);
    if (!hit) {
      const reqs = requirementsOf(m.selector);
      const namespaces = m.namespaces === "global" ? undefined : new Set(this.index.namespaces(m.namespaces));
      const out = new Set<string>();
      for (const s of this.networkSets) {
        const inScope = namespaces === undefined ? s.namespace === undefined : s.namespace !== undefined && namespaces.has(s.namespace);
        if (inScope && requirementsMatch(reqs, s.labels)) for (const n of s.nets) addCanonical(out, n, true);
      }
      hit = [...out].sort();
      this.setMemo.set(key, hit);
    }
    return hit;
  }
}

/** Adds the canonical form of an address or CIDR; text that does not parse is skipped. */
function addCanonical(out: Set<string>, text: string, isNet: boolean): void {
  try {
    if (!isNet) out.add(formatIp(parseIp(text)));
    else if (text.includes("/")) out.add(formatCidr(parseCidr(text)));
    else {
      const a = parseIp(text); // a bare address in a set's nets: that one host
      out.add(`${formatIp(a)}/${bitsOf(a.family)}`);
    }
  } catch {
    /* bad text selects nothing */
  }
}
