/**
 * The protocol both sides speak, the one entry the server and every client
 * import it by: the gen/ facade (wire/proto.ts, the only door to generated
 * code), frame and tunnel codecs, ids and limits, the one error base, the
 * tunnel cipher and the primitives (AEAD, HKDF, X25519) under it. Pure
 * TypeScript that runs in browsers, WebViews and Node alike.
 */
export * from "./crypto/aead.ts";
export * from "./crypto/hkdf.ts";
export * from "./crypto/select-x25519-provider.ts";
export * from "./crypto/stablelib-x25519.ts";
export * from "./crypto/webcrypto-x25519.ts";
export * from "./crypto/x25519.ts";
export * from "./tunnel/dns-message.ts";
export * from "./tunnel/tunnel-cipher.ts";
export * from "./tunnel/tunnel-name.ts";
export * from "./tunnel/tunnel-packet.ts";
export * from "./tunnel/tunnel-stream.ts";
export * from "./wire/auth-proof.ts";
export * from "./wire/bytes.ts";
export * from "./wire/errors.ts";
export * from "./wire/frame-codec.ts";
export * from "./wire/group-operation.ts";
export * from "./wire/grpc-status-details.ts";
export * from "./wire/ids.ts";
export * from "./wire/invite.ts";
export * from "./wire/limits.ts";
export * from "./wire/prekey-proofs.ts";
export * from "./wire/proto.ts";
