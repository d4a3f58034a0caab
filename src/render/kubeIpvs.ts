/**
 * Policy on kube-proxy's IPVS path. In IPVS mode kube-proxy puts every ClusterIP (and
 * external / load-balancer IP) on the dummy device kube-ipvs0, so a packet to a Service is
 * for a local address: it goes PREROUTING -> INPUT, where IPVS (a LOCAL_IN hook after the
 * filter table) rewrites its destination to a backend and sends it out again through
 * OUTPUT -> POSTROUTING. It never meets FORWARD, where the endpoint chains run, and the
 * policy render's INPUT and OUTPUT rules read it as pod -> host (always allowed) and
 * host -> pod (`-o slc+ -j ACCEPT`): without this, Service traffic would skip the client's
 * egress policy and a local backend's ingress policy.
 *
 * So, when the agent sees kube-ipvs0 (src/agent/connectivityAgent.ts, at start and on every
 * route resync), the filter table gets:
 *
 *   SLUICE-INPUT  (first after the underlay trust)
 *                          -j MARK --set-xmark 0x80000/0x80000     everything that enters through INPUT
 *   SLUICE-OUTPUT (first)  -m mark --mark 0x80000/0x80000 -j slc-ipvs
 *   slc-ipvs:              -j MARK --set-xmark 0x0/0x80000          (an encapsulation of this packet
 *                                                                   re-enters OUTPUT: it must not match again)
 *                          -m mark --mark 0x40000/0x40000 -j slc-ipvs-from-wl   from a local pod
 *                          -o slc+ -j slc-to-wl                     to a local pod: its ingress policy
 *   slc-ipvs-from-wl:      -j MARK --set-xmark 0x0/0x40000          (in OUTPUT it is pod -> backend, not pod -> host)
 *                          -s <addr> -g slc-fw-<iface>              per address of a local pod: its egress policy
 *                          -j DROP
 *
 * Only a packet that entered this host and leaves it again carries the INPUT mark in OUTPUT:
 * what the host itself sends (host -> Service -> pod included, as in iptables mode) meets
 * `-o slc+ -j ACCEPT` as before. A packet from a pod carries the to-host mark as well
 * (SLUICE-INPUT sets it on everything from slc+, then its egress chain drops a source that
 * is not the pod's), so in OUTPUT, where no rule can see the interface it came in on, its
 * source address names the pod reliably; a source no local pod has is dropped (fail closed).
 * Then the packet is judged as the pod-to-pod (or pod-to-outside) connection it has become:
 * egress of the client against the backend's address, ingress of a local backend; a remote
 * backend's node judges ingress in its FORWARD as for any pod traffic. Established packets
 * take the endpoint chains' conntrack ACCEPT, as in FORWARD; the replies never pass OUTPUT
 * (IPVS rewrites them on their way through FORWARD, or INPUT for a client that is this
 * host), and they are ESTABLISHED there with kube-proxy's net.ipv4.vs.conntrack=1.
 *
 * The bit stays on packets delivered to this host, where nothing reads it; but an IPVS service
 * keyed on the whole firewall mark (`ipvsadm -f`, which kube-proxy does not use) would not
 * match a packet that carries it, as with kube-proxy's own 0x4000.
 *
 * A pod's packet to a Service address (an address on kube-ipvs0, the agent reads them at
 * start and on every route resync) skips its egress chain in INPUT: it is judged in OUTPUT,
 * as the connection to the backend it becomes (see withKubeIpvs). What it does not do:
 * police IPVS services whose traffic is not re-sent by IPVS through OUTPUT (a real server
 * that is this host itself: that is traffic to the node).
 */
import { type Family, bitsOf } from "../model/ip.js";
import { HOST_IFACE_PREFIX } from "../model/endpoint.js";
import { CHAIN_FROM_WL, CHAIN_TO_WL, MARK_TO_HOST, MARK_TO_HOST_CLEAR, endpointChainName } from "./policy.js";
import type { IpsetSpec } from "./ipsetSpec.js";
import type { PolicyRender } from "./policyContract.js";
import type { ChainSpec } from "./ruleset.js";
import { DROP, type MarkBits, RETURN, type Rule, goTo, inIface, inSet, jump, markIs, outIface, rule, setMark, src } from "./rules.js";

/** The device kube-proxy in IPVS mode puts Service addresses on; its presence turns the IPVS path on. */
export const KUBE_IPVS_DEVICE = "kube-ipvs0";

export const CHAIN_IPVS = "slc-ipvs";
export const CHAIN_IPVS_FROM_WL = "slc-ipvs-from-wl";

/** Set on every packet in SLUICE-INPUT (IPVS on): it entered this host. Cleared in slc-ipvs. */
export const MARK_VIA_INPUT: MarkBits = { value: 0x80000, mask: 0x80000 };
export const MARK_VIA_INPUT_CLEAR: MarkBits = { value: 0, mask: 0x80000 };

/** The hash:ip of the addresses of this family on kube-ipvs0: the Service addresses. */
export const ipvsServicesSet = (family: Family): string => `slc${family}-ipvs-services`;

/**
 * The render with the IPVS path added: the INPUT mark first in SLUICE-INPUT, the OUTPUT
 * dispatch first in SLUICE-OUTPUT (before the host -> pod ACCEPT), and the two chains.
 *
 * `services`: the addresses on kube-ipvs0. A pod's packet to one of them is not traffic to
 * this host: in INPUT it keeps the to-host mark (what slc-ipvs dispatches on) but skips the
 * pod's egress chain, which judges it in OUTPUT once IPVS has rewritten it to the backend
 * (otherwise an Admin or Baseline rule about addresses, which the own-node path meets,
 * would judge the Service address instead of the backend). The raw table's anti-spoofing
 * has tied the source to the pod's veth already.
 */
export function withKubeIpvs(r: PolicyRender, family: Family, services: readonly string[]): PolicyRender {
  const host = bitsOf(family);
  const servicesSet: IpsetSpec = { name: ipvsServicesSet(family), type: "hash:ip", family, members: [...new Set(services)].sort() };
  const pods = inIface(HOST_IFACE_PREFIX, true);
  const at = r.inputRules.findIndex((x) => x.action.kind === "jump" && x.action.chain === CHAIN_FROM_WL);
  if (at < 0) throw new Error(`withKubeIpvs: SLUICE-INPUT has no jump to ${CHAIN_FROM_WL} to put the Service exemption before`);
  const inputRules = [...r.inputRules.slice(0, at), rule(RETURN, pods, inSet(servicesSet.name, ["dst"])), ...r.inputRules.slice(at)];
  const owners = new Map<string, string[]>();
  for (const ep of r.localEndpoints) for (const a of ep.addresses) owners.set(a, [...(owners.get(a) ?? []), ep.hostIface]);
  const bySource: Rule[] = [];
  for (const ep of r.localEndpoints) {
    // An address two local pods claim names neither: its traffic meets the DROP below.
    for (const a of ep.addresses) if (owners.get(a)?.length === 1) bySource.push(rule(goTo(endpointChainName("egress", ep.hostIface)), src(`${a}/${host}`)));
  }
  const chains: ChainSpec[] = [
    { name: CHAIN_IPVS, rules: [rule(setMark(MARK_VIA_INPUT_CLEAR)), rule(jump(CHAIN_IPVS_FROM_WL), markIs(MARK_TO_HOST)), rule(jump(CHAIN_TO_WL), outIface(HOST_IFACE_PREFIX, true))] },
    { name: CHAIN_IPVS_FROM_WL, rules: [rule(setMark(MARK_TO_HOST_CLEAR)), ...bySource, rule(DROP)] },
  ];
  return {
    ...r,
    inputRules: [rule(setMark(MARK_VIA_INPUT)), ...inputRules],
    outputRules: [rule(jump(CHAIN_IPVS), markIs(MARK_VIA_INPUT)), ...r.outputRules],
    chains: [...r.chains, ...chains],
    ipsets: [...r.ipsets, servicesSet],
  };
}
