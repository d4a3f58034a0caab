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
    files: ["src/render/**/*.ts", "src/policy/**/*.ts", "src/routing/**/*.ts", "src/model/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/dataplane/*", "**/datastore/*", "**/agent/*", "**/ctl/*", "**/cni/*", "**/sandbox/*", "**/bin/*"],
              message: "render/, policy/, routing/ and model/ are pure: they import no dataplane, datastore, agent, CLI, CNI or sandbox module (pass data in instead).",
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
