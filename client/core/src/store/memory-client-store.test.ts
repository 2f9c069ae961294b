import { clientStoreContract } from "./client-store-contract.ts";
import { MemoryClientStore } from "./memory-client-store.ts";

clientStoreContract("MemoryClientStore", () =>
  Promise.resolve({
    store: new MemoryClientStore(),
    reopen: undefined,
    openSibling: undefined,
    dispose: () => Promise.resolve(),
  }),
);
