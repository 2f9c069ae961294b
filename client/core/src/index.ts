/**
 * The public API of the client core, for the CLI, the app and load
 * generators. Everything here runs in browsers, WebViews and Node alike.
 */
export { type DeviceSigner, type Ed25519Provider, ED25519_SEED_BYTES } from "./crypto/device-signer.ts";
export { nobleEd25519 } from "./crypto/noble-ed25519.ts";
export { selectEd25519Provider } from "./crypto/select-ed25519-provider.ts";
export { webCryptoEd25519 } from "./crypto/webcrypto-ed25519.ts";
export { aeadOpen, aeadOpenRandomNonce, aeadSeal, aeadSealRandomNonce } from "./crypto/aead.ts";
export { hkdfSha256, hmacSha256, sha256, sha512 } from "./crypto/hkdf.ts";
export { mlKemDecapsulate, mlKemEncapsulate, mlKemGenerateKeyPair } from "./crypto/ml-kem.ts";
export { selectX25519Provider } from "./crypto/select-x25519-provider.ts";
export { stablelibX25519 } from "./crypto/stablelib-x25519.ts";
export { webCryptoX25519 } from "./crypto/webcrypto-x25519.ts";
export type { X25519KeyPair, X25519Provider } from "./crypto/x25519.ts";

export {
  type ConnectionFailure,
  type ConnectionState,
  type ConnectionStatus,
  type TransportHealth,
  isFinal,
  isLoggedIn,
} from "./manager/connection-state.ts";
export { TypedEmitter } from "./manager/typed-emitter.ts";
export { type SwitchingTransports, TransportLadder, isSwitchingTransports } from "./manager/ladder-transports.ts";

export type {
  ChatKindName,
  ChatSummary,
  ClientStore,
  ContactRecord,
  DeviceProfile,
  E2eRecord,
  E2eWrite,
  NewOutboxMessage,
  OutboxEntry,
  OutboxProblem,
  OutboxQuery,
  OutboxState,
  ReceivedMessage,
} from "./outbox/client-store.ts";
export { StaleE2eStateError, toChatSummary } from "./outbox/client-store.ts";
export { MemoryClientStore } from "./outbox/memory-client-store.ts";

export { type BackoffPolicy, DEFAULT_BACKOFF } from "./session/backoff.ts";
export {
  ClientSession,
  type ClientSessionOptions,
  DEFAULT_TIMING,
  type E2eKeyMaterial,
  type GroupEvent,
  type ReceivedMessageEvent,
  type SessionEvents,
  type SessionTiming,
  type WaitOptions,
} from "./session/client-session.ts";
export { type Clock, systemClock } from "./session/clock.ts";
export { DEFAULT_GRACE_WINDOW, type GraceWindow } from "./group/epoch-window.ts";
export type { GroupChangeRequest } from "./group/group-admin.ts";
export type { GroupChange } from "./group/group-codec.ts";
export type { RequestKind, RequestValue, ResponseValue } from "./session/connection.ts";
export {
  type LinkApproval,
  linkNewDevice,
  type RegisteredDevice,
  registerNewDevice,
  type RegisterNewDeviceOptions,
} from "./session/device-auth.ts";
export { linkApprovalProof } from "./wire/auth-proof.ts";
export { drop } from "./session/drop.ts";
export { type Logger, silentLogger } from "./session/logger.ts";
export { contentText, textContent } from "./session/payload-codec.ts";
export {
  DEVICE_LIST_TTL_MS,
  E2eCodec,
  type E2eServer,
  IdentityChangedError,
  type KnownDevice,
  type KnownUser,
  NeedsServerError,
} from "./session/e2e-payload-codec.ts";
export { type DeviceIdentity, makeDeviceIdentity } from "./crypto/session-setup.ts";
export { safetyNumber, type SafetyNumber } from "./crypto/safety-number.ts";

export type {
  Transport,
  TransportCloseReason,
  TransportFactory,
  TransportHandlers,
  TransportKind,
} from "./transport/transport.ts";
export { webSocketTransportFactory, webSocketUrl } from "./transport/websocket-transport.ts";
export {
  type FailoverTransportFactory,
  failoverTransportFactory,
  splitServerUrls,
} from "./transport/failover-transport.ts";
export {
  DNS_MESSAGE_TYPE,
  type DnsExchange,
  DnsExchangeError,
  type DnsExchangeOptions,
  FetchDohExchange,
  MAX_GET_QUERY_BYTES,
  base64UrlEncode,
  dohGetUrl,
  retryAfterMs,
} from "./transport/dns-exchange.ts";
export {
  type DnsTunnelOptions,
  type DnsTunnelTransportFactory,
  type TunnelEndpoint,
  dnsTunnelTransportFactory,
} from "./transport/dns-tunnel-transport.ts";
export { httpsTransportFactory, pipeUrl } from "./transport/https-transport.ts";

export { DevicesChangedError, RemessengerError, errorCodeName, isError, shouldRetry } from "./wire/errors.ts";
export {
  type Invite,
  InviteError,
  decodeInvite,
  decodeTunnelKey,
  encodeInvite,
  encodeTunnelKey,
} from "./wire/invite.ts";
export { directChatId, isId, messageIdFromHex, messageIdToHex } from "./wire/ids.ts";
export { type Chat, ChatKind, ErrorCode } from "./wire/proto.ts";
