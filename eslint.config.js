// One lint setup for the whole repository, with type information.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";

const NODE_BUILTINS = {
  group: ["node:*"],
  message: "this code runs in browsers and WebViews too; put Node code in client/core/src/node (the ./node entry)",
};
const NO_SERVER = { group: ["**/server/**"], message: "nothing outside server/ imports the server" };
const NO_CLIENT = {
  group: ["**/client/**", "@remessenger/client-core", "@remessenger/client-core/*"],
  message: "the server imports nothing of a client; what both sides speak is in @remessenger/protocol",
};
const NO_DEEP = {
  group: ["**/protocol/src/**", "**/core/src/**", "**/protocol/*.ts", "@remessenger/*/src/**"],
  message:
    "reach another package by its name and public entry (@remessenger/protocol, @remessenger/client-core[/node])",
};

/** One no-restricted-imports list per area of the tree (tests of an area follow its production rules). */
function importBoundaries() {
  const restrict = (files, patterns, extra = {}) => ({
    files,
    ...extra,
    rules: { "no-restricted-imports": ["error", { patterns }] },
  });
  return [
    restrict(["protocol/**/*.ts"], [NODE_BUILTINS, NO_SERVER, NO_CLIENT], { ignores: ["protocol/**/*.test.ts"] }),
    restrict(["protocol/**/*.test.ts"], [NO_SERVER, NO_CLIENT]),
    restrict(["client/core/**/*.ts"], [NODE_BUILTINS, NO_SERVER, NO_DEEP], {
      ignores: ["client/core/**/*.test.ts", "client/core/src/node/**"],
    }),
    restrict(["client/core/**/*.test.ts", "client/core/src/node/**/*.ts"], [NO_SERVER, NO_DEEP]),
    restrict(["client/cli/**/*.ts", "client/test/**/*.ts", "scripts/**/*.ts"], [NO_SERVER, NO_DEEP]),
    restrict(["server/**/*.ts"], [NO_CLIENT, NO_DEEP], { ignores: ["server/src/core/**/*.ts"] }),
    restrict(
      ["server/src/core/**/*.ts"],
      [
        NO_CLIENT,
        NO_DEEP,
        {
          group: ["**/edge/**", "ws", "@grpc/*", "nice-grpc*", "node:http*", "node:net", "node:dgram"],
          message: "server/core knows nothing of transports",
        },
        {
          group: ["ioredis", "node:sqlite", "**/store/*-store.ts"],
          message: "server/core reaches storage only through the Store port",
        },
      ],
      { ignores: ["server/src/core/**/*.test.ts"] },
    ),
    restrict(["server/src/core/**/*.test.ts"], [NO_CLIENT, NO_DEEP]),
  ];
}

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
  // Dependencies point one way (gen ← protocol ← client-core ← {cli, app}; protocol ← server), and a
  // package is reached only by name through its public entry. In flat config a later block's
  // no-restricted-imports replaces an earlier one's, so each area states its whole list once.
  ...importBoundaries(),
  {
    files: ["client/cli/**/*.ts", "scripts/**/*.ts", "bench/**/*.ts"],
    rules: { "no-console": "off" },
  },
  {
    files: ["**/*.test.ts", "server/test/**/*.ts", "client/test/**/*.ts"],
    rules: { "@typescript-eslint/no-non-null-assertion": "off" },
  },
  // The entry shims are plain JavaScript so that an old Node can run their version check;
  // no TypeScript project holds them, so they are linted without type information.
  {
    files: ["server/bin/*.js", "client/cli/bin/*.js"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: "readonly", URL: "readonly" },
    },
  },
);
