/**
 * The login recipe of docs/grpc.md, runnable: register a new device, log in
 * with a fresh challenge, and make an authenticated call. Uses nothing of the
 * project but the ts-proto definitions generated from proto/ (any gRPC stack
 * with code generated from proto/ works the same way).
 *   node docs/examples/grpc-login.ts 127.0.0.1:8081
 * Prints one JSON line: the user and device ids, the token and its expiry, the
 * number of chats (`| jq -r .sessionToken` gives the token for grpcurl).
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { Metadata, createChannel, createClient } from "nice-grpc";
import { AuthServiceDefinition, ChatServiceDefinition } from "@remessenger/protocol";

const address = process.argv[2] ?? "127.0.0.1:8081";
const channel = createChannel(address);
const auth = createClient(AuthServiceDefinition, channel);
const utf8 = (text: string): Buffer => Buffer.from(text, "utf8");

// 1. The device's Ed25519 key; the server gets the raw 32-byte public key.
const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const identityKey = Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url");

// 2. Register: sign "remessenger/v1/register" 0x00 nonce identity_key utf8(display_name).
const displayName = "backend-bot";
const first = await auth.getChallenge({});
const registerProof = Buffer.concat([
  utf8("remessenger/v1/register"),
  Buffer.from([0]),
  first.nonce,
  identityKey,
  utf8(displayName),
]);
const registered = await auth.register({
  displayName,
  identityKey,
  nonce: first.nonce,
  signature: sign(null, registerProof, privateKey),
});

// 3. Later (a restart, or the token's 24 h are over): log in with a fresh challenge,
//    signing "remessenger/v1/login" 0x00 nonce utf8(device_id).
const second = await auth.getChallenge({});
const loginProof = Buffer.concat([
  utf8("remessenger/v1/login"),
  Buffer.from([0]),
  second.nonce,
  utf8(registered.deviceId),
]);
const login = await auth.login({
  deviceId: registered.deviceId,
  nonce: second.nonce,
  signature: sign(null, loginProof, privateKey),
});

// 4. Every other call carries the token as metadata.
const metadata = Metadata({ authorization: `Bearer ${login.sessionToken}` });
const chats = await createClient(ChatServiceDefinition, channel).listChats({}, { metadata });
channel.close();
process.stdout.write(
  `${JSON.stringify({
    userId: login.userId,
    deviceId: login.deviceId,
    sessionToken: login.sessionToken,
    sessionExpiresAtMs: login.sessionExpiresAtMs,
    chats: chats.chats.length,
  })}\n`,
);
