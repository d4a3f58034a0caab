/**
 * Kubernetes objects checked against the Kubernetes OpenAPI definitions as the
 * kubernetes-models package ships them, two ways:
 *
 * - schemaErrors(): its validators (compiled from the OpenAPI schemas) check types, enums
 *   and required fields, but let unknown fields through;
 * - KubeFieldChecker.unknownFields(): walks the object against the TypeScript
 *   declarations generated from the same definitions and names every field the schema
 *   does not have, which the API server would drop (or refuse, with kubectl's strict
 *   field validation): a misspelt `tolerations` fails here.
 *
 * kubernetes-models is ESM only; this CommonJS code loads it with import(), which
 * TypeScript keeps as is under module Node16.
 */
import { resolve } from "node:path";
import * as ts from "typescript";

export interface KubeObject {
  apiVersion: string;
  kind: string;
  [key: string]: unknown;
}

export function isKubeObject(v: unknown): v is KubeObject {
  return typeof v === "object" && v !== null && typeof (v as KubeObject).apiVersion === "string" && typeof (v as KubeObject).kind === "string";
}

/** kubernetes-models' module of a kind: `v1` -> kubernetes-models/v1/Kind, `apps/v1` -> kubernetes-models/apps/v1/Kind. */
function modelModule(o: Pick<KubeObject, "apiVersion" | "kind">): string {
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}

type ModelClass = new (data: unknown) => { validate(): void };

/** The OpenAPI schema's complaints about `o` (empty when it is valid). */
export async function schemaErrors(o: KubeObject): Promise<string[]> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(modelModule(o))) as Record<string, unknown>;
  } catch (err) {
    return [`no Kubernetes schema for ${o.apiVersion} ${o.kind}: ${(err as Error).message}`];
  }
  const Model = mod[o.kind] as ModelClass | undefined;
  if (!Model) return [`${modelModule(o)} exports no ${o.kind}`];
  try {
    new Model(o).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

/** Types whose declaration is an empty interface for "one of several shapes". */
const SCHEMA_PROPS_OR = new Set(["IJSONSchemaPropsOrArray", "IJSONSchemaPropsOrBool", "IJSONSchemaPropsOrStringArray"]);

export class KubeFieldChecker {
  private constructor(
    private readonly checker: ts.TypeChecker,
    private readonly roots: Map<string, ts.Type>,
    private readonly schemaProps: ts.Type,
  ) {}

  /** Loads the declarations of every kind in `kinds` (one TypeScript program, a few seconds). */
  static create(kinds: readonly Pick<KubeObject, "apiVersion" | "kind">[]): KubeFieldChecker {
    const unique = [...new Map(kinds.map((k) => [`${k.apiVersion} ${k.kind}`, k])).values()];
    const lines = unique.map((k, i) => `import type { I${k.kind} as T${i} } from "${modelModule(k)}";`);
    lines.push(`import type { IJSONSchemaProps as SchemaProps } from "kubernetes-models/apiextensions.k8s.io/v1/JSONSchemaProps";`);
    lines.push(`export type { ${[...unique.map((_, i) => `T${i}`), "SchemaProps"].join(", ")} };`);
    // A file in the repository, so that node_modules is found; it exists only in memory.
    const file = resolve(__dirname, "__kubeTypes.ts");
    const options: ts.CompilerOptions = { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, target: ts.ScriptTarget.ES2022, noEmit: true, strict: true, skipLibCheck: true, types: [] };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    const fileExists = host.fileExists.bind(host);
    host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, lines.join("\n"), lang) : getSourceFile(name, lang, ...rest));
    host.fileExists = (name) => name === file || fileExists(name);
    const program = ts.createProgram([file], options, host);
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    if (problems.length > 0) throw new Error(`cannot load the Kubernetes declarations: ${problems.join("; ")}`);
    const checker = program.getTypeChecker();
    const source = program.getSourceFile(file);
    const moduleSymbol = source && checker.getSymbolAtLocation(source);
    if (!moduleSymbol) throw new Error("cannot load the Kubernetes declarations");
    const exported = new Map(checker.getExportsOfModule(moduleSymbol).map((s) => [s.name, checker.getDeclaredTypeOfSymbol(s)]));
    const roots = new Map(unique.map((k, i) => [`${k.apiVersion} ${k.kind}`, exported.get(`T${i}`) as ts.Type]));
    return new KubeFieldChecker(checker, roots, exported.get("SchemaProps") as ts.Type);
  }

  /** Paths (`spec.template.spec.tolerashuns`) of the fields of `o` its kind's schema does not have. */
  unknownFields(o: KubeObject): string[] {
    const root = this.roots.get(`${o.apiVersion} ${o.kind}`);
    if (!root) throw new Error(`${o.apiVersion} ${o.kind} was not loaded`);
    const out: string[] = [];
    this.walk(o, root, "", out);
    return out;
  }

  private walk(value: unknown, type: ts.Type, path: string, out: string[]): void {
    if (value === null || typeof value !== "object") return; // scalars: the schema validator's job
    const { checker } = this;
    const t = checker.getNonNullableType(type);
    if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
    const name = t.aliasSymbol?.name ?? t.getSymbol()?.name ?? "";
    if (SCHEMA_PROPS_OR.has(name)) {
      // A JSON schema, an array of them, or a bool/string list: walk what is a schema.
      if (Array.isArray(value)) value.forEach((v, i) => this.walk(v, this.schemaProps, `${path}[${i}]`, out));
      else this.walk(value, this.schemaProps, path, out);
      return;
    }
    if (t.isUnion()) {
      const members = t.types.filter((m) => m.flags & ts.TypeFlags.Object && checker.isArrayType(m) === Array.isArray(value));
      let first: string[] | undefined;
      for (const m of members) {
        const found: string[] = [];
        this.walk(value, m, path, found);
        if (found.length === 0) return;
        first ??= found;
      }
      out.push(...(first ?? []));
      return;
    }
    if (Array.isArray(value)) {
      if (!checker.isArrayType(t)) return;
      const element = checker.getTypeArguments(t as ts.TypeReference)[0];
      if (element) value.forEach((v, i) => this.walk(v, element, `${path}[${i}]`, out));
      return;
    }
    const index = checker.getIndexInfoOfType(t, ts.IndexKind.String);
    // An empty interface with no index signature is "any JSON" (apiextensions' JSON).
    if (!index && checker.getPropertiesOfType(t).length === 0) return;
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const at = path ? `${path}.${key}` : key;
      const prop = checker.getPropertyOfType(t, key);
      if (prop) this.walk(v, checker.getTypeOfSymbol(prop), at, out);
      else if (index) this.walk(v, index.type, at, out);
      else out.push(at);
    }
  }
}
