/**
 * The one door to the generated protobuf code (gen/). Everything in client/ and
 * server/ imports wire types from here, so a change of generator touches one file.
 */
export {
  Chat,
  ChatKind,
  CreateChatRequest,
  CreateChatResponse,
  GetChatRequest,
  GetChatResponse,
  GetGroupOperationsRequest,
  GetGroupOperationsResponse,
  ListChatsRequest,
  ListChatsResponse,
} from "../../../gen/remessenger/v1/chat.ts";
export { Content, SenderKeyRequest, SessionReset } from "../../../gen/remessenger/v1/content.ts";
export {
  GroupEnvelope,
  GroupInfo,
  GroupOperation,
  GroupOperationKind,
  SenderKeyDistribution,
  SignedGroupOperation,
} from "../../../gen/remessenger/v1/group.ts";
export { E2eEnvelope, PreKeyMessage } from "../../../gen/remessenger/v1/e2e.ts";
export { DevicesChanged, ErrorCode, ErrorDetail } from "../../../gen/remessenger/v1/errors.ts";
// google.rpc.Status (as RpcStatus: "Status" is gRPC's code enum in every gRPC library) and the Any it carries.
export { Status as RpcStatus } from "../../../gen/google/rpc/status.ts";
export { Any } from "../../../gen/google/protobuf/any.ts";
export { ClientFrame, Hello, ServerFrame, TunnelInfo } from "../../../gen/remessenger/v1/frame.ts";
export {
  Device,
  GetChallengeRequest,
  GetChallengeResponse,
  GetUserRequest,
  GetUserResponse,
  LinkDeviceRequest,
  LinkDeviceResponse,
  LoginRequest,
  LoginResponse,
  RegisterRequest,
  RegisterResponse,
  User,
} from "../../../gen/remessenger/v1/identity.ts";
export {
  AckRequest,
  AckResponse,
  ChatAck,
  DevicePayload,
  Message,
  PingRequest,
  PingResponse,
  Receipt,
  SendMessageRequest,
  SendMessageResponse,
  ServerPush,
  SubscribeRequest,
  SubscribeResponse,
  SyncComplete,
} from "../../../gen/remessenger/v1/message.ts";
export {
  GetPreKeyBundlesRequest,
  GetPreKeyBundlesResponse,
  OneTimePreKey,
  PqPreKey,
  PreKeyBundle,
  PreKeyStock,
  PublishPreKeysRequest,
  PublishPreKeysResponse,
  SignedPreKey,
} from "../../../gen/remessenger/v1/prekeys.ts";
export {
  AuthServiceDefinition,
  ChatServiceDefinition,
  MessageServiceDefinition,
  PreKeyServiceDefinition,
  UserServiceDefinition,
  type AuthServiceClient,
  type AuthServiceImplementation,
  type ChatServiceClient,
  type ChatServiceImplementation,
  type MessageServiceClient,
  type MessageServiceImplementation,
  type PreKeyServiceClient,
  type PreKeyServiceImplementation,
  type UserServiceClient,
  type UserServiceImplementation,
} from "../../../gen/remessenger/v1/service.ts";
export { PipeFrames, PipeOpened } from "../../../gen/remessenger/v1/pipe.ts";
// Between server nodes only (forwarded sends, the push bus); clients never see these.
export {
  ChatLeft,
  ForwardSendBatchesRequest,
  ForwardSendBatchesResponse,
  ForwardedAnswer,
  ForwardedSend,
  MessageEvent,
  NodeServiceDefinition,
  PushEvent,
  PushEventBatch,
  type NodeServiceClient,
  type NodeServiceImplementation,
} from "../../../gen/remessenger/internal/v1/node.ts";
