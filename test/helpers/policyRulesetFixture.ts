/**
 * A realistic policy filter table and its sets, as the renderer shapes them (dispatch
 * chains, one endpoint chain, policy chains naming address, net-with-exceptions and
 * address-and-port sets): the fixture both dataplanes' driver tests apply.
 */
import type { IpsetSpec } from "../../src/render/ipsetSpec.js";
import type { ChainSpec, Ruleset } from "../../src/render/ruleset.js";
import { ACCEPT, DROP, type Match, RETURN, type Rule, ctState, dst, goTo, inIface, inSet, jump, markIs, outIface, protocol, rule, setMark, src } from "../../src/render/rules.js";

export const IFACE = "slc0123456789ab";
export const TW = `slc-tw-${IFACE}`;
export const FW = `slc-fw-${IFACE}`;
export const POL = "slc-pi-3f2a9c1d0b7e";
export const POL_NAMED = "slc-pi-0a1b2c3d4e5f";
/** The accept bit: what a policy chain sets on what it allows (as the rule writes it, and as iptables-save prints it). */
export const ACCEPT_BIT = { value: 0x10000, mask: 0x10000 };
export const ACCEPT_MARK = "-j MARK --set-xmark 0x10000/0x10000";
export const allow = (...m: Match[]): Rule => rule(setMark(ACCEPT_BIT), ...m);
export const tcpPorts = (from: number, to = from): Match[] => [protocol("tcp"), { kind: "ports", protocol: "tcp", dst: { from, to } }];

export const peers: IpsetSpec = { name: "slc4-peers", type: "hash:ip", family: 4, members: ["10.244.1.5", "10.244.2.7"] };
export const block: IpsetSpec = { name: "slc4-block", type: "hash:net", family: 4, members: ["10.0.0.0/8", "10.1.0.0/16 nomatch", "10.9.9.9/32"] };
export const named: IpsetSpec = { name: "slc4-named", type: "hash:ip,port", family: 4, members: ["10.244.3.4,tcp:8080", "10.244.3.4,udp:53"] };

export interface Shape {
  /** Rules of the main policy chain before its final RETURN. */
  policy?: Rule[];
  /** Whether the named-port policy chain (and its set) exists. */
  named?: boolean;
}

/** A realistic filter table: dispatch chains, one endpoint chain, policy chains with sets. */
export function ruleset(shape: Shape = {}): Ruleset {
  const withNamed = shape.named ?? true;
  const chains: ChainSpec[] = [
    {
      name: "SLUICE-FORWARD",
      rules: [
        rule(ACCEPT, ctState("RELATED", "ESTABLISHED")),
        rule(DROP, ctState("INVALID")),
        rule(jump("slc-to-wl"), outIface("slc", true)),
        rule(jump("slc-from-wl"), inIface("slc", true)),
        rule(ACCEPT, src("10.244.0.0/16")),
        rule(ACCEPT, dst("10.244.0.0/16")),
      ],
    },
    { name: "SLUICE-INPUT", rules: [rule(DROP, inIface("slc", true), ctState("INVALID"))] },
    { name: "SLUICE-OUTPUT", rules: [rule(ACCEPT, outIface("slc", true))] },
    { name: "slc-to-wl", rules: [rule(goTo(TW), outIface(IFACE))] },
    { name: "slc-from-wl", rules: [rule(goTo(FW), inIface(IFACE))] },
    { name: TW, rules: [rule(setMark({ value: 0, mask: 0x30000 })), rule(jump(POL)), ...(withNamed ? [rule(jump(POL_NAMED))] : []), rule(RETURN, markIs(ACCEPT_BIT)), rule(DROP)] },
    { name: FW, rules: [rule(RETURN)] },
    {
      name: POL,
      rules: [...(shape.policy ?? [allow(inSet("slc4-peers", ["src"])), allow(...tcpPorts(80), inSet("slc4-block", ["src"]))]), rule(RETURN, markIs(ACCEPT_BIT))],
    },
  ];
  if (withNamed) chains.push({ name: POL_NAMED, rules: [allow(inSet("slc4-peers", ["src"]), inSet("slc4-named", ["dst", "dst"]))] });
  return {
    family: 4,
    tables: [
      {
        table: "filter",
        chains,
        hooks: [
          { builtin: "FORWARD", target: "SLUICE-FORWARD" },
          { builtin: "INPUT", target: "SLUICE-INPUT" },
          { builtin: "OUTPUT", target: "SLUICE-OUTPUT" },
        ],
      },
    ],
  };
}

