/**
 * The agent's configuration: flanneld's flags with their names and defaults, plus a
 * few Sluice additions, validated with zod. A bad value stops the agent at start with
 * a message naming the flag.
 */
import { z } from "zod";
import { ConfigError, describeZodIssues } from "./errors.js";
import { type FlagSpec, parseDuration, parseFlags } from "./flags.js";
import { ipText } from "./netSchemas.js";

export const AGENT_FLAGS: readonly FlagSpec[] = [
  { name: "etcd-endpoints", kind: "string", help: "comma-separated etcd endpoints", default: "http://127.0.0.1:4001,http://127.0.0.1:2379" },
  { name: "etcd-prefix", kind: "string", help: "etcd prefix of the network config and leases", default: "/coreos.com/network" },
  { name: "etcd-keyfile", kind: "string", help: "TLS key file for etcd" },
  { name: "etcd-certfile", kind: "string", help: "TLS certificate file for etcd" },
  { name: "etcd-cafile", kind: "string", help: "TLS CA file for etcd" },
  { name: "etcd-username", kind: "string", help: "etcd username" },
  { name: "etcd-password", kind: "string", help: "etcd password" },
  { name: "iface", kind: "list", help: "interface name or IP to use for inter-host traffic; tried in order" },
  { name: "iface-regex", kind: "list", help: "regex of interface names or IPs to use; tried after --iface" },
  { name: "iface-can-reach", kind: "string", help: "use the interface that routes to this address" },
  { name: "public-ip", kind: "string", help: "IPv4 address other nodes use to reach this node (default: the interface's)" },
  { name: "public-ipv6", kind: "string", help: "IPv6 address other nodes use to reach this node" },
  { name: "subnet-file", kind: "string", help: "where subnet.env is written", default: "/run/flannel/subnet.env" },
  { name: "subnet-lease-renew-margin", kind: "string", help: "renew the lease this long before it expires (minutes, or a duration like 30s)", default: "60" },
  { name: "subnet-lease-ttl", kind: "string", help: "Sluice: TTL of the subnet lease (duration)", default: "24h" },
  { name: "ip-masq", kind: "boolean", help: "masquerade pod traffic that leaves the cluster network", default: "false" },
  { name: "ip-masq-fully-random-disable", kind: "boolean", help: "do not use --random-fully on masquerade rules", default: "false" },
  { name: "iptables-resync", kind: "string", help: "seconds between checks that the iptables rules are in place", default: "5" },
  { name: "iptables-forward-rules", kind: "boolean", help: "accept cluster traffic in FORWARD (Docker >= 1.13 sets its policy to DROP)", default: "true" },
  { name: "iptables-backend", kind: "string", help: "Sluice: auto, nft or legacy", default: "auto" },
  { name: "dataplane", kind: "string", help: "Sluice: iptables, nftables, or auto (nftables when kube-proxy runs in nftables mode or net-conf.json sets EnableNFTables)", default: "auto" },
  { name: "ip-blackhole-route", kind: "boolean", help: "add a blackhole route for this node's subnet", default: "false" },
  { name: "route-resync", kind: "string", help: "Sluice: seconds between route/neighbour/FDB reconciliations", default: "10" },
  { name: "healthz-ip", kind: "string", help: "address of the /healthz and /readyz server", default: "0.0.0.0" },
  { name: "healthz-port", kind: "string", help: "port of the health server (0 disables it)", default: "0" },
  { name: "net-config-path", kind: "string", help: "net-conf.json path (Kubernetes mode)", default: "/etc/kube-flannel/net-conf.json" },
  { name: "kube-subnet-mgr", kind: "boolean", help: "use the Kubernetes API instead of etcd", default: "false" },
  { name: "kube-api-url", kind: "string", help: "Kubernetes API server URL" },
  { name: "kubeconfig-file", kind: "string", help: "kubeconfig file" },
  { name: "kube-annotation-prefix", kind: "string", help: "prefix of the node annotations", default: "sluice.dev" },
  { name: "set-node-network-unavailable", kind: "boolean", help: "set the NetworkUnavailable node condition", default: "true" },
  { name: "cni-data-dir", kind: "string", help: "Sluice: sluice-cni's dataDir (netconf); pod records are read from <dir>/_sluice/endpoints, policy-ready marks written to <dir>/_sluice/ready", default: "/var/lib/cni/networks" },
  { name: "enable-policy", kind: "boolean", help: "Sluice: enforce NetworkPolicy (and the other policy kinds) on this node's pods", default: "true" },
  { name: "policy-resync", kind: "string", help: "Sluice: seconds between full checks of the policy chains and ipsets (changes apply at once)", default: "60" },
  { name: "resource-prefix", kind: "string", help: "Sluice: etcd prefix of namespaces, pods, endpoints and policies", default: "/sluice/v1" },
  { name: "node-name", kind: "string", help: "Sluice: this node's name (default: NODE_NAME or the host name)" },
  { name: "docker-opts-file", kind: "string", help: "Sluice: also write Docker options (like mk-docker-opts.sh) to this file" },
  { name: "log-level", kind: "string", help: "Sluice: trace, debug, info, warn or error", default: "info" },
  { name: "version", kind: "boolean", help: "print the version and exit" },
  { name: "help", kind: "boolean", help: "print this help and exit" },
];

const duration = (bareUnitMs: number, what: string) =>
  z.string().transform((s, ctx) => {
    const ms = parseDuration(s, bareUnitMs);
    if (ms === undefined) {
      ctx.addIssue({ code: "custom", message: `"${s}" is not ${what}` });
      return z.NEVER;
    }
    return ms;
  });

const port = z
  .string()
  .regex(/^\d+$/, "must be a port number")
  .transform(Number)
  .refine((n) => n >= 0 && n <= 65535, "must be between 0 and 65535");

const schema = z
  .object({
    "etcd-endpoints": z
      .string()
      .default("http://127.0.0.1:4001,http://127.0.0.1:2379")
      .transform((s) => s.split(",").map((e) => e.trim()).filter(Boolean))
      .refine((a) => a.length > 0 && a.every((e) => /^https?:\/\/[^/]+$/.test(e) || /^unix:\/\/\/.+/.test(e)), "must be comma-separated http(s)://host:port or unix:///path URLs"),
    "etcd-prefix": z.string().default("/coreos.com/network").refine((s) => s.startsWith("/"), "must start with /"),
    "etcd-keyfile": z.string().optional(),
    "etcd-certfile": z.string().optional(),
    "etcd-cafile": z.string().optional(),
    "etcd-username": z.string().optional(),
    "etcd-password": z.string().optional(),
    iface: z.array(z.string().min(1)).default([]),
    "iface-regex": z
      .array(
        z.string().refine((s) => {
          try {
            new RegExp(s);
            return true;
          } catch {
            return false;
          }
        }, "must be a valid regular expression"),
      )
      .default([]),
    "iface-can-reach": ipText().optional(),
    "public-ip": ipText(4).optional(),
    "public-ipv6": ipText(6).optional(),
    "subnet-file": z.string().min(1).default("/run/flannel/subnet.env"),
    "subnet-lease-renew-margin": duration(60_000, "minutes or a duration").default(3_600_000),
    "subnet-lease-ttl": duration(1000, "a duration").default(86_400_000),
    "ip-masq": z.boolean().default(false),
    "ip-masq-fully-random-disable": z.boolean().default(false),
    "iptables-resync": duration(1000, "seconds or a duration")
      .default(5000)
      .refine((ms) => ms >= 100, "must be at least 100ms"),
    "iptables-forward-rules": z.boolean().default(true),
    "iptables-backend": z.enum(["auto", "nft", "legacy"]).default("auto"),
    dataplane: z.enum(["auto", "iptables", "nftables"]).default("auto"),
    "ip-blackhole-route": z.boolean().default(false),
    "route-resync": duration(1000, "seconds or a duration")
      .default(10_000)
      .refine((ms) => ms >= 100, "must be at least 100ms"),
    "healthz-ip": ipText().default("0.0.0.0"),
    "healthz-port": port.default(0),
    "net-config-path": z.string().default("/etc/kube-flannel/net-conf.json"),
    "kube-subnet-mgr": z.boolean().default(false),
    "kube-api-url": z.string().optional(),
    "kubeconfig-file": z.string().optional(),
    "kube-annotation-prefix": z.string().default("sluice.dev"),
    "set-node-network-unavailable": z.boolean().default(true),
    "cni-data-dir": z.string().default("/var/lib/cni/networks").refine((s) => s.startsWith("/"), "must be an absolute path"),
    "enable-policy": z.boolean().default(true),
    "policy-resync": duration(1000, "seconds or a duration")
      .default(60_000)
      .refine((ms) => ms >= 100, "must be at least 100ms"),
    "resource-prefix": z.string().default("/sluice/v1").refine((s) => s.startsWith("/"), "must start with /"),
    "node-name": z.string().min(1).optional(),
    "docker-opts-file": z.string().optional(),
    "log-level": z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
    version: z.boolean().default(false),
    help: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    if (c["subnet-lease-renew-margin"] >= c["subnet-lease-ttl"]) {
      ctx.addIssue({ code: "custom", path: ["subnet-lease-renew-margin"], message: "must be shorter than --subnet-lease-ttl" });
    }
    if (c["subnet-lease-renew-margin"] <= 0) {
      ctx.addIssue({ code: "custom", path: ["subnet-lease-renew-margin"], message: "must be positive" });
    }
    if ((c["etcd-keyfile"] === undefined) !== (c["etcd-certfile"] === undefined)) {
      ctx.addIssue({ code: "custom", path: ["etcd-certfile"], message: "--etcd-keyfile and --etcd-certfile must be given together" });
    }
  });

export type AgentConfig = z.output<typeof schema> & { nodeName: string };

export function loadAgentConfig(argv: readonly string[], env: NodeJS.ProcessEnv, hostname: string): AgentConfig {
  const { flags, positional } = parseFlags(argv, AGENT_FLAGS, env, "sluice-agent");
  if (positional.length > 0) throw new ConfigError(positional[0] as string, "unexpected argument (flags start with --)", "sluice-agent");
  const parsed = schema.safeParse(flags);
  if (!parsed.success) {
    const first = describeZodIssues(parsed.error.issues)[0];
    throw new ConfigError(`--${first?.field ?? "?"}`, first?.reason ?? "is invalid", "sluice-agent");
  }
  // An empty NODE_NAME (e.g. a downward-API field that is not set) counts as unset.
  const given = parsed.data["node-name"] ?? (env["NODE_NAME"] || undefined);
  // In Kubernetes mode the name must be the Node object's: a host name that differs would
  // make the agent wait forever for a podCIDR on a node that does not exist.
  if (parsed.data["kube-subnet-mgr"] && given === undefined) throw new ConfigError("NODE_NAME", "must be set with --kube-subnet-mgr (from the downward API: fieldRef spec.nodeName), or pass --node-name", "sluice-agent");
  const nodeName = given ?? hostname;
  return { ...parsed.data, nodeName };
}
