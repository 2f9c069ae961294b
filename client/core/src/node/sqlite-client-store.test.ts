import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clientStoreContract } from "../../../test/client-store-contract.ts";
import { SqliteClientStore } from "./sqlite-client-store.ts";

clientStoreContract("SqliteClientStore", () => {
  const dir = mkdtempSync(join(tmpdir(), "remessenger-store-"));
  const path = join(dir, "client.sqlite");
  const store = SqliteClientStore.open(path);
  const opened: SqliteClientStore[] = [store];
  const openAnother = (): Promise<SqliteClientStore> => {
    const another = SqliteClientStore.open(path);
    opened.push(another);
    return Promise.resolve(another);
  };
  return Promise.resolve({
    store,
    reopen: openAnother,
    openSibling: openAnother,
    dispose: async () => {
      for (const handle of opened) await handle.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});
