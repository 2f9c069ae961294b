/**
 * Protocol limits both sides enforce. They bound every buffer a peer can make
 * the other allocate.
 */

/** Largest encoded ClientFrame or ServerFrame on any transport. */
export const MAX_FRAME_BYTES = 256 * 1024;

/** Largest message body: payload plus all device payloads. */
export const MAX_MESSAGE_BYTES = 128 * 1024;

/** Device payloads on one message (one per recipient device). */
export const MAX_DEVICE_PAYLOADS = 1024;

/** Message ids are 128-bit, chosen by the sending client. */
export const MESSAGE_ID_BYTES = 16;

/** Members of a chat at creation (groups grow later through the group actor). */
export const MAX_CHAT_MEMBERS_AT_CREATE = 1000;

export const MAX_DISPLAY_NAME_CHARS = 64;
export const MAX_CHAT_TITLE_CHARS = 128;

/** Chat acks in one AckRequest. */
export const MAX_ACKS_PER_REQUEST = 1000;

/** How long a login challenge stays valid. */
export const CHALLENGE_TTL_MS = 60_000;

export const ED25519_PUBLIC_KEY_BYTES = 32;
export const ED25519_SIGNATURE_BYTES = 64;
export const CHALLENGE_NONCE_BYTES = 32;

export const X25519_PUBLIC_KEY_BYTES = 32;
export const ML_KEM_768_PUBLIC_KEY_BYTES = 1184;
/** One-time prekeys (of each kind) in one publish request. */
export const MAX_PREKEYS_PER_PUBLISH = 200;
/** One-time prekeys (of each kind) the server keeps per device. */
export const MAX_STORED_PREKEYS = 1000;
/** Below this many one-time prekeys the server tells the device to publish more. */
export const PREKEY_LOW_WATER = 20;
/** A link approval is valid at most this long after it is made. */
export const MAX_LINK_APPROVAL_MS = 60 * 60 * 1000;
/** Devices one user may have. */
export const MAX_DEVICES_PER_USER = 16;
