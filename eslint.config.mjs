import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["build/", "dist/", "node_modules/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    // The pure layers (DESIGN: render/ and the allocators stay pure) import no I/O layer.
    // A backend's spec (src/backends/<name>/spec.ts) and the registry of specs are pure too;
    // its node side is kernel.ts (registered in kernels.ts), which nothing pure imports.
    files: ["src/render/**/*.ts", "src/policy/**/*.ts", "src/routing/**/*.ts", "src/model/**/*.ts", "src/backends/types.ts", "src/backends/specs.ts", "src/backends/parseBackendKeys.ts", "src/backends/directRoute.ts", "src/backends/*/spec.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/dataplane/*", "**/datastore/*", "**/agent/*", "**/ctl/*", "**/cni/*", "**/sandbox/*", "**/bin/*", "**/backends/kernels*", "**/backends/kernelTypes*", "**/backends/*/kernel*", "**/backends/*/device*"],
              message: "render/, policy/, routing/, model/ and the backends' specs are pure: they import no dataplane, datastore, agent, CLI, CNI, sandbox or backend kernel module (pass data in instead).",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["**/*.mjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
