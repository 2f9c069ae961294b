/**
 * The client core's Node-only adapters (`@remessenger/client-core/node`): the
 * SQLite client store, the key file (device secrets wrapped under a keychain
 * key or a passphrase), node:crypto providers for the curves and ML-KEM, and
 * the DNS exchanges (UDP/TCP to a resolver, DoH over HTTP/2) that a browser
 * cannot make. Everything else a Node client needs is in the main entry.
 */
export { nodeEd25519 } from "./node-ed25519.ts";
export { nodeMlKem } from "./node-ml-kem.ts";
export { nodeX25519 } from "./node-x25519.ts";
export { NodeDnsExchange } from "./node-dns-exchange.ts";
export { NodeHttp2DohExchange } from "./node-http2-doh-exchange.ts";
export { SqliteClientStore } from "./sqlite-client-store.ts";
export {
  IDENTITY_FILE,
  type KekSource,
  KeyFileError,
  hasKeyFile,
  isKeychainUsable,
  readKeyFile,
  writeKeyFile,
} from "./key-file.ts";
