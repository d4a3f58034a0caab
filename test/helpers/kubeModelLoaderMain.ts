/**
 * `sluicectl explain`'s Kubernetes loader (loadKubePolicyModel: the agents' KubePolicySource
 * over real HTTP) in a long-lived child process, so that it can run inside a network
 * namespace (where the sandbox's API server is) and load the model once per request
 * without paying a process start and the client library's import each time (1.5 s per
 * step under the Kubernetes-mode suite). Started with an IPC channel by KubeModelLoader
 * (kubeModelLoader.ts): `{id, apiUrl}` in, `{id, ok, model|error}` out.
 */
import { loadKubePolicyModel } from "../../src/ctl/explain.js";
import type { LoaderReply, LoaderRequest } from "./kubeModelLoader.js";

if (!process.send) {
  process.stderr.write("kubeModelLoaderMain: start me with an IPC channel (KubeModelLoader.start)\n");
  process.exit(2);
}
process.on("disconnect", () => process.exit(0)); // the test process went away
process.on("message", (m: LoaderRequest) => {
  void (async () => {
    let reply: LoaderReply;
    try {
      reply = { id: m.id, ok: true, model: (await loadKubePolicyModel({ apiUrl: m.apiUrl })).model };
    } catch (err) {
      reply = { id: m.id, ok: false, error: (err as Error).message };
    }
    process.send?.(reply);
  })();
});
process.send({ ready: true });
