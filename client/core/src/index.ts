/**
 * The public API of the client core, for the CLI, the app and load
 * generators. Everything here runs in browsers, WebViews and Node alike.
 * Apps and the CLI talk to the server through `Messenger` (messenger/);
 * the lower layers are exported for tests, load generators and adapters.
 */
export { type DeviceSigner, type Ed25519Provider, ED25519_SEED_BYTES } from "./crypto/device-signer.ts";
export { nobleEd25519 } from "./crypto/noble-ed25519.ts";
export {
  DEVICE_SECRET_BYTES,
  type DeviceSecrets,
  DeviceSecretsError,
  decodeDeviceSecrets,
  encodeDeviceSecrets,
  generateDeviceSecrets,
  unwrapDeviceSecrets,
  wrapDeviceSecrets,
} from "./crypto/device-secrets.ts";
export { IndexedDbKeyVault, type KeyVault, KeyVaultError } from "./crypto/key-vault.ts";
export { MemoryKeyVault } from "./crypto/memory-key-vault.ts";
export { selectEd25519Provider } from "./crypto/select-ed25519-provider.ts";
export { webCryptoEd25519 } from "./crypto/webcrypto-ed25519.ts";
export {
  aeadOpen,
  aeadOpenRandomNonce,
  aeadSeal,
  aeadSealRandomNonce,
  hkdfSha256,
  hmacSha256,
  sha256,
  sha512,
  selectX25519Provider,
  stablelibX25519,
  webCryptoX25519,
  type X25519KeyPair,
  type X25519Provider,
  linkApprovalProof,
  DevicesChangedError,
  RemessengerError,
  errorCodeName,
  isError,
  shouldRetry,
  type Invite,
  InviteError,
  decodeInvite,
  decodeTunnelKey,
  encodeInvite,
  encodeTunnelKey,
  directChatId,
  isId,
  messageIdFromHex,
  messageIdToHex,
  type Chat,
  ChatKind,
  ErrorCode,
} from "@remessenger/protocol";
export {
  type MlKemProvider,
  mlKemDecapsulate,
  mlKemEncapsulate,
  mlKemGenerateKeyPair,
  nobleMlKem,
} from "./crypto/ml-kem.ts";

export {
  type ConnectionFailure,
  type ConnectionState,
  type ConnectionStatus,
  type TransportHealth,
  isFinal,
  isLoggedIn,
} from "./connection/connection-state.ts";
export { TypedEmitter } from "./runtime/typed-emitter.ts";
export {
  type LadderEvents,
  type SwitchingTransports,
  TransportLadder,
  isSwitchingTransports,
} from "./connection/ladder-transports.ts";
export {
  type CreateTransportsOptions,
  type TransportChoice,
  TransportConfigError,
  type TransportConfigProblem,
  type TransportEndpoints,
  type TransportExchanges,
  createTransports,
} from "./connection/create-transports.ts";
export { RUNG_STABLE_AFTER_MS } from "./connection/transport-ladder.ts";

export type {
  ChatActivity,
  ChatKindName,
  ChatSummary,
  ClientStore,
  ContactRecord,
  DeviceProfile,
  DirectoryStore,
  E2eRecord,
  E2eStateStore,
  E2eWrite,
  NewOutboxMessage,
  OutboxEntry,
  OutboxProblem,
  OutboxQuery,
  OutboxState,
  OutboxStore,
  ProfileStore,
  ReceivedMessage,
  TimelineStore,
} from "./store/client-store.ts";
export { StaleE2eStateError, isShownToUser, toChatSummary } from "./store/client-store.ts";
export { MemoryClientStore } from "./store/memory-client-store.ts";
export { DEFAULT_CLIENT_DB, IndexedDbClientStore } from "./store/indexeddb-client-store.ts";

export { type BackoffPolicy, DEFAULT_BACKOFF } from "./runtime/backoff.ts";
export {
  ClientSession,
  type ClientSessionOptions,
  DEFAULT_TIMING,
  type E2eKeyMaterial,
  type GroupEvent,
  type ReceivedMessageEvent,
  type SenderKeyRequestEvent,
  type SessionEvents,
  type SessionTiming,
  type WaitOptions,
} from "./session/client-session.ts";
export { type Clock, systemClock } from "./runtime/clock.ts";
export { DEFAULT_GRACE_WINDOW, type GraceWindow } from "./group/epoch-window.ts";
export type { GroupChangeRequest } from "./group/group-admin.ts";
export type { GroupChange } from "./group/group-chain.ts";
export type { RequestKind, RequestValue, ResponseValue } from "./session/connection.ts";
export {
  type LinkApproval,
  linkNewDevice,
  type RegisteredDevice,
  registerNewDevice,
  type RegisterNewDeviceOptions,
} from "./session/device-auth.ts";
export { drop } from "./runtime/drop.ts";
export { type Logger, silentLogger } from "./runtime/logger.ts";
export { contentText, textContent } from "./session/payload-codec.ts";
export { DEVICE_LIST_TTL_MS, type KnownDevice, type KnownUser } from "./e2e/device-directory.ts";
export { IdentityChangedError, NeedsServerError } from "./e2e/pairwise-errors.ts";
export { type E2eServer, PairwiseSessions } from "./e2e/pairwise-sessions.ts";
export {
  PREKEY_BATCH,
  SIGNED_PREKEY_GRACE_MS,
  SIGNED_PREKEY_ROTATION_MS,
  type SignedPreKeyPolicy,
} from "./e2e/prekey-upkeep.ts";
export { type DeviceIdentity, makeDeviceIdentity } from "./e2e/session-setup.ts";
export { safetyNumber, type SafetyNumber } from "./e2e/safety-number.ts";

export type {
  Transport,
  TransportCloseReason,
  TransportConnectOptions,
  TransportFactory,
  TransportHandlers,
  TransportKind,
} from "./connection/transport.ts";
export { webSocketTransportFactory, webSocketUrl } from "./connection/websocket-transport.ts";
export {
  type FailoverTransportFactory,
  failoverTransportFactory,
  splitServerUrls,
} from "./connection/failover-transport.ts";
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
} from "./connection/dns-exchange.ts";
export {
  type DnsTunnelOptions,
  type DnsTunnelTransportFactory,
  type TunnelEndpoint,
  type TunnelStats,
  dnsTunnelTransportFactory,
} from "./connection/dns-tunnel-transport.ts";
export { httpsTransportFactory, pipeUrl } from "./connection/https-transport.ts";

/** The messenger API: what apps and the CLI call (messenger/). */
export {
  type CallOptions,
  type IncomingMessage,
  Messenger,
  type MessengerEvents,
  type MessengerOptions,
  type TimelineHandle,
} from "./messenger/messenger.ts";
export { type MessengerLifecycle, MessengerNotRunningError } from "./messenger/session-lifecycle.ts";
export type {
  MessengerSession,
  MessengerSessionFactory,
  MessengerSessionOptions,
} from "./messenger/messenger-session.ts";
export { type ClientSessionBase, clientSessionFactory } from "./messenger/client-session-adapter.ts";
export { type Observable, ObservableValue } from "./messenger/observable.ts";
export type { MessageState, MessageView } from "./messenger/message-view.ts";
export type { ChatListItem } from "./messenger/chat-list.ts";
export type { TimelineState } from "./messenger/timeline.ts";
export type { DirectChat } from "./messenger/chats.ts";
export type { Contact } from "./messenger/contacts.ts";
export { type GroupMembership, type RefusedOperation, UnknownGroupError } from "./messenger/groups.ts";
export {
  type Verification,
  type VerificationStatus,
  type VerifiedDevice,
  UnknownUserError,
  keyFingerprint,
} from "./messenger/verification.ts";
export {
  APPROVAL_VALIDITY_MS,
  type ApprovalToken,
  LINK_CODE_PREFIX,
  LinkFormatError,
  decodeApproval,
  decodeLinkCode,
  encodeApproval,
  encodeLinkCode,
} from "./messenger/linking.ts";
export { type FirstAttempt, attemptVerdict } from "./messenger/first-attempt.ts";

/** Opening and making a profile: from a store and the device's secrets to a Messenger (messenger/open-profile.ts). */
export {
  type CreateProfileOptions,
  type CryptoProviders,
  type DeviceKeys,
  type MessengerSettings,
  NoProfileError,
  type OpenProfileOptions,
  type ProfileAccessOptions,
  ProfileExistsError,
  type ProfileJoin,
  ProfileSecretsError,
  type ProfileSecretsProblem,
  createProfile,
  deviceKeysOf,
  ensureDeviceSecrets,
  identityKeyText,
  openProfile,
} from "./messenger/open-profile.ts";
export { DEVICE_SECRETS_RECORD, type DeviceSecretsKeeper, storedDeviceSecrets } from "./messenger/secrets-keeper.ts";
export {
  type EndpointOverrides,
  type ProfileEndpoints,
  transportEndpointsOf,
  tunnelFromHello,
  withEndpointOverrides,
} from "./messenger/profile-endpoints.ts";
