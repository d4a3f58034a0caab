/**
 * Every registered backend (src/backends/specs.ts) through the same scenario, golden-tested
 * (test/golden/backends/<type>[-<variant>].txt): its config defaults, the lease data it
 * publishes, its pod MTU, and the routes, neighbours and FDB entries it wants for a
 * dual-stack node with peers on-link, behind a router, without backend data, and one the
 * trust rules refuse. A backend without a golden fails here: adding one means reviewing its
 * desired state.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ALL_KERNELS } from "../../src/backends/kernels.js";
import { SUPPORTED_BACKENDS, describeBackend, parseBackend, specOf } from "../../src/backends/specs.js";
import type { LocalBackendState } from "../../src/backends/types.js";
import { parseNetworkConfig } from "../../src/config/networkConfig.js";
import { ConfigError } from "../../src/config/errors.js";
import { parseCidr, parseIp } from "../../src/model/ip.js";
import type { Peer } from "../../src/model/lease.js";
import { computeRouting, describeRouting } from "../../src/routing/backends.js";
import { assertGolden } from "../helpers/golden.js";

/** What each peer's node keeps locally, as its backend's kernel side would resolve it: made up, stable (vxlan: VTEP MACs; wireguard: a public key). */
const localOf = (type: string, n: number): LocalBackendState => {
  if (type === "wireguard") {
    const key = Buffer.alloc(32, n).toString("base64");
    return { 4: key, 6: key };
  }
  return { 4: `0e:2a:00:00:04:0${n}`, 6: `0e:2a:00:00:06:0${n}` };
};

const VARIANTS: Array<{ name: string; backend: Record<string, unknown> }> = [
  ...SUPPORTED_BACKENDS.map((t) => ({ name: t, backend: { Type: t } })),
  { name: "vxlan-direct", backend: { Type: "vxlan", DirectRouting: true } },
  { name: "vxlan-tuned", backend: { Type: "vxlan", VNI: 4096, Port: 4789, MTU: 1400, GBP: true, MacPrefix: "AA:BB" } },
  { name: "ipip-direct", backend: { Type: "ipip", DirectRouting: true } },
  { name: "wireguard-auto", backend: { Type: "wireguard", Mode: "auto", ListenPort: 51000, PersistentKeepaliveInterval: 25 } },
  { name: "wireguard-ipv6", backend: { Type: "wireguard", Mode: "ipv6", MTU: 1450, PSK: Buffer.alloc(32, 7).toString("base64") } },
];

function scenario(backendJson: Record<string, unknown>): string {
  // Dual stack where the backend carries both families (ipip: IPv4 only, a dual-stack config is refused).
  const dual = (specOf(parseBackend(backendJson, "t")).families ?? [4, 6]).includes(6);
  const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", ...(dual ? { EnableIPv6: true, IPv6Network: "fd00:244::/56" } : {}), Backend: backendJson });
  const spec = specOf(cfg.backend);
  const peer = (n: number, segment: number, o: { data?: boolean; subnet?: string } = {}): Peer => {
    const data = o.data === false ? {} : spec.leaseData(cfg.backend, localOf(cfg.backend.type, n));
    return {
      name: `node-${n}`,
      subnet: parseCidr(o.subnet ?? `10.244.${n}.0/24`),
      subnet6: parseCidr(`fd00:244:0:${n}::/64`),
      publicIP: parseIp(`10.250.${segment}.1${n}`),
      publicIPv6: parseIp(`fd00:250:${segment}::1${n}`),
      backendType: cfg.backend.type,
      data: data[4],
      data6: data[6],
    };
  };
  const peers = [peer(1, 1), peer(2, 1), peer(3, 2), peer(4, 1, { data: false }), peer(5, 1, { subnet: "10.244.1.128/25" })];
  const view = {
    backend: cfg.backend,
    subnet: parseCidr("10.244.1.0/24"),
    subnet6: dual ? parseCidr("fd00:244:0:1::/64") : undefined,
    publicIP: parseIp("10.250.1.11"),
    publicIPv6: parseIp("fd00:250:1::11"),
    onLinkNetworks: [parseCidr("10.250.1.0/24"), parseCidr("fd00:250:1::/64")],
    blackholeRoute: false,
    network: cfg.ipv4?.network,
    network6: cfg.ipv6?.network,
  };
  const d = computeRouting(view, peers);
  const own = spec.leaseData(cfg.backend, localOf(cfg.backend.type, 1));
  return [
    `# Backend ${JSON.stringify(backendJson)}`,
    `config ${JSON.stringify(describeBackend(cfg.backend))}`,
    `lease BackendData ${JSON.stringify(own[4] ?? null)}`,
    `lease BackendV6Data ${JSON.stringify(own[6] ?? null)}`,
    `mtu underlay 1500 -> pods ${spec.podMtu(cfg.backend, 1500, false)} (IPv6 underlay: ${spec.podMtu(cfg.backend, 1500, true)})`,
    `devices ${JSON.stringify(spec.devices(cfg.backend))}`,
    `encapsulation IPv4 ${JSON.stringify(spec.encapsulation(cfg.backend, 4) ?? null)} IPv6 ${JSON.stringify(spec.encapsulation(cfg.backend, 6) ?? null)}`,
    ...d.decisions.map((x) => `decision ${x.peer} via ${x.via}${x.reason ? `: ${x.reason}` : ""}`),
    ...describeRouting(d),
    "",
  ].join("\n");
}

describe("backends: one scenario, every backend", () => {
  for (const v of VARIANTS) {
    test(`${v.name}: config, lease data, MTU and desired routing are the golden's`, () => {
      assertGolden("backends", `${v.name}.txt`, scenario(v.backend));
    });
  }

  test("every backend type has a node side, and cleanup recognises only devices of ours", () => {
    assert.equal(ALL_KERNELS.length, SUPPORTED_BACKENDS.length);
    const link = (name: string, kind: string) => ({ index: 1, name, mtu: 1500, mac: undefined, up: true, kind });
    const owned = (name: string, kind: string): boolean => ALL_KERNELS.some((k) => k.ownsLink(link(name, kind)));
    assert.ok(owned("sluice.1", "vxlan") && owned("sluice-v6.4096", "vxlan"));
    assert.ok(owned("sluice-wg", "wireguard") && owned("sluice-wg-v6", "wireguard") && owned("sluice-wg", "tun"), "kernel WireGuard, and wireguard-go's TUN");
    assert.ok(owned("sluice.ipip", "ipip") && !owned("tunl0", "ipip") && !owned("flannel.ipip", "ipip"), "our IPIP device, not the kernel's fallback tunl0");
    assert.ok(!owned("flannel.1", "vxlan") && !owned("sluice.1", "bridge") && !owned("eth0", "veth") && !owned("sluice-wg", "veth") && !owned("wg0", "wireguard"));
  });

  test("a backend's own keys are checked by that backend, errors naming Backend.<Key>; unknown types name the supported ones", () => {
    const field = (raw: Record<string, unknown>): string => {
      try {
        parseBackend(raw, "t");
      } catch (err) {
        if (err instanceof ConfigError) return `${err.field}: ${err.reason}`;
        throw err;
      }
      return "ok";
    };
    assert.match(field({ Type: "vxlan", VNI: 1 << 24 }), /^Backend\.VNI: must fit in 24 bits/);
    assert.equal(field({ Type: "host-gw", VNI: 1 << 24 }), "ok", "host-gw reads no VXLAN keys (flannel ignores them too)");
    assert.match(field({ Type: "VXLAN" }), /^ok$/, "the type is case-insensitive, as flannel's");
    assert.match(field({ Type: "WireGuard", Mode: "both" }), /^Backend\.Mode: must be one of separate, auto, ipv4, ipv6/);
    assert.match(field({ Type: "wireguard", PSK: "c2VjcmV0" }), /^Backend\.PSK: must be a WireGuard key/);
    assert.match(field({ Type: "wireguard", PersistentKeepaliveInterval: "25s" }), /^Backend\.PersistentKeepaliveInterval: /, "seconds as a number, as flannel decodes it");
    assert.match(field({ Type: "wireguard", ListenPort: 0 }), /^Backend\.ListenPort: /);
    assert.match(field({ Type: "wireguard", MTU: 1300 }), /^Backend\.MTU: must be at least 1360/);
    assert.match(field({ Type: "carrier-pigeon" }), new RegExp(`^Backend\\.Type: "carrier-pigeon" is not supported \\(supported: ${SUPPORTED_BACKENDS.join(", ")}\\)`));
  });
});
