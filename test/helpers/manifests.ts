/** The shipped Kubernetes manifests (manifests/, crds/) as objects, for the tests that keep them true. */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap" with { "resolution-mode": "import" };
import type { IContainer } from "kubernetes-models/v1/Container" with { "resolution-mode": "import" };
import type { IDaemonSet } from "kubernetes-models/apps/v1/DaemonSet" with { "resolution-mode": "import" };
import { type KubeObject, isKubeObject } from "./kubeSchemas.js";

/** The repository (this file runs from build/test/helpers). */
export const ROOT = resolve(__dirname, "../../..");

export interface ManifestDoc {
  file: string;
  index: number;
  object: KubeObject;
}

/** The YAML files of a directory (relative to ROOT), kustomization.yaml left out. */
export function yamlFiles(dir: string): string[] {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { withFileTypes: true })
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name) && e.name !== "kustomization.yaml")
    .map((e) => `${dir}/${e.name}`)
    .sort();
}

/** Every document of a YAML file, which must all be Kubernetes objects. */
export function loadDocs(file: string): ManifestDoc[] {
  const docs = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"));
  return docs.flatMap((d, index) => {
    if (d.errors.length > 0) throw new Error(`${file} document ${index + 1}: ${d.errors[0]?.message}`);
    const object: unknown = d.toJS();
    if (object === null) return [];
    if (!isKubeObject(object)) throw new Error(`${file} document ${index + 1}: not a Kubernetes object (apiVersion and kind)`);
    return [{ file, index, object }];
  });
}

export function readYaml(file: string): unknown {
  const docs = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"));
  if (docs.length !== 1) throw new Error(`${file}: expected one document`);
  return docs[0]?.toJS();
}

/** The objects of manifests/*.yaml (the sources; not the rendered bundle). */
export function manifestObjects(): ManifestDoc[] {
  return yamlFiles("manifests").flatMap(loadDocs);
}

/** The CRD documents in crds/ (none until the CRDs are written). */
export function crdObjects(): ManifestDoc[] {
  return yamlFiles("crds").flatMap(loadDocs);
}

export function findObject(kind: string, name?: string): KubeObject {
  const all = manifestObjects().filter((d) => d.object.kind === kind && (name === undefined || (d.object["metadata"] as { name?: string } | undefined)?.name === name));
  if (all.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""} in manifests/, found ${all.length}`);
  return (all[0] as ManifestDoc).object;
}

export const daemonSet = (): IDaemonSet => findObject("DaemonSet") as unknown as IDaemonSet;
export const configMap = (): IConfigMap => findObject("ConfigMap") as unknown as IConfigMap;

export function podContainer(ds: IDaemonSet, name: string, init = false): IContainer {
  const spec = ds.spec?.template.spec;
  const list = (init ? spec?.initContainers : spec?.containers) ?? [];
  const c = list.find((x) => x.name === name);
  if (!c) throw new Error(`DaemonSet has no ${init ? "init " : ""}container ${name}`);
  return c;
}

/** A container's plain env values (valueFrom entries left out). */
export function plainEnv(c: IContainer): Record<string, string> {
  return Object.fromEntries((c.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
}
