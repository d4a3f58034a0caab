// Bundles each entry point into one file under dist/bin, so that the CNI plugin and
// the CLI start fast. Packages that load native code or .proto files at run time stay
// external and are resolved from node_modules next to dist/.
import { build } from "esbuild";
import { chmod } from "node:fs/promises";

// sluice-worker is no command: the agent runs it as a worker thread (src/util/workerThread.ts).
const entries = ["sluice-agent", "sluicectl", "sluice-cni", "sluice-worker"];
const external = ["netlink", "koffi", "etcd3", "@grpc/grpc-js", "@grpc/proto-loader", "@kubernetes/client-node"];

for (const name of entries) {
  const outfile = `dist/bin/${name}.js`;
  await build({
    entryPoints: [`src/bin/${name}.ts`],
    outfile,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "cjs",
    sourcemap: true,
    external,
    logLevel: "warning",
  });
  await chmod(outfile, 0o755);
}
