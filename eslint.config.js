// One lint setup for the whole repository, with type information.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";

export default tseslint.config(
  { ignores: ["node_modules/**", ".tools/**", "gen/**", "data/**", "client/app/**", "eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-non-null-assertion": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true, allowBoolean: true }],
      "@typescript-eslint/no-unnecessary-condition": "off",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      "@typescript-eslint/no-confusing-void-expression": ["error", { ignoreArrowShorthand: true }],
      // Promise.withResolvers<void>() is the clearest way to say "a signal with no value".
      "@typescript-eslint/no-invalid-void-type": "off",
      // Cycles in our own modules only: walking node_modules (vitest's browser provider and its
      // bundles) is slow and stops on specifiers the resolver cannot load.
      "import-x/no-cycle": ["error", { ignoreExternal: true }],
      "no-console": "error",
    },
  },
  {
    // The portable core runs in browsers and WebViews: no Node built-ins.
    files: ["client/core/**/*.ts"],
    ignores: ["client/core/**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["node:*"],
              message: "client/core is isomorphic; put Node code behind an interface in client/cli",
            },
          ],
        },
      ],
    },
  },
  {
    // Dependencies point one way: nothing imports the server, the server core knows no edges.
    files: ["client/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/server/**"], message: "nothing in client/ imports the server" }] },
      ],
    },
  },
  {
    files: ["server/src/core/**/*.ts"],
    ignores: ["server/src/core/**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/edge/**", "ws", "@grpc/*", "nice-grpc*", "node:http*", "node:net", "node:dgram"],
              message: "server/core knows nothing of transports",
            },
            {
              group: ["ioredis", "node:sqlite", "**/store/*-store.ts"],
              message: "server/core reaches storage only through the Store port",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["client/cli/**/*.ts", "scripts/**/*.ts", "bench/**/*.ts"],
    rules: { "no-console": "off" },
  },
  {
    files: ["**/*.test.ts", "server/test/**/*.ts", "client/test/**/*.ts"],
    rules: { "@typescript-eslint/no-non-null-assertion": "off" },
  },
);
