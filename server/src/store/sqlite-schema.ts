/**
 * The embedded store's on-disk schema and how a database file is opened.
 *
 * The schema version lives in `PRAGMA user_version`. Opening applies every
 * migration above the file's version in one IMMEDIATE transaction, so two
 * processes opening a fresh file cannot both create it, and refuses a file
 * written by a newer server rather than guessing at its layout.
 *
 * Message bodies sit in a rowid table because they can be large (WITHOUT ROWID
 * tables suit small rows); message ids sit in their own table that trimming
 * never touches, so an id stays idempotent after its message was delivered.
 * Per-chat rows are keyed by the chat's integer rowid (chat_key), not its
 * 27-character id: the random message ids make every append touch pages all
 * over message_ids, and the shorter key made a 1,000-message commit ~30% faster.
 */
import { DatabaseSync } from "node:sqlite";
import { DEVICE_KEYS_MIGRATION } from "./sqlite-device-keys.ts";

/** Each entry moves the schema from its index to index + 1. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE server_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
  );
  CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    identity_key BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX devices_by_user ON devices (user_id);
  CREATE TABLE chats (
    chat_key INTEGER PRIMARY KEY,
    chat_id TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    title TEXT NOT NULL,
    created_by_user_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    head_seq INTEGER NOT NULL
  );
  CREATE TABLE chat_members (
    chat_key INTEGER NOT NULL,
    position INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (chat_key, position)
  ) WITHOUT ROWID;
  CREATE INDEX chat_members_by_user ON chat_members (user_id, chat_key);
  CREATE TABLE cursors (
    chat_key INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    through_seq INTEGER NOT NULL,
    PRIMARY KEY (chat_key, device_id)
  ) WITHOUT ROWID;
  CREATE TABLE messages (
    chat_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (chat_key, seq)
  );
  CREATE TABLE message_ids (
    chat_key INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    sender_device_id TEXT NOT NULL,
    PRIMARY KEY (chat_key, message_id)
  ) WITHOUT ROWID;
  `,
  DEVICE_KEYS_MIGRATION,
  // Groups: admins, epoch and the membership chain (kept after its messages
  // are trimmed); cursors indexed by seq so the trim's MIN does not scan
  // every member device of a large group on each ack.
  `
  ALTER TABLE chats ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE chats ADD COLUMN last_op_hash BLOB;
  ALTER TABLE chats ADD COLUMN last_op_seq INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE chat_members ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE group_operations (
    chat_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (chat_key, seq)
  ) WITHOUT ROWID;
  CREATE INDEX cursors_by_seq ON cursors (chat_key, through_seq);
  `,
  // Removed members' devices still owed the group's entries through their
  // removal (until_seq); resume_seq: re-added meanwhile, the cursor continues
  // there once it reaches until_seq.
  `
  CREATE TABLE departures (
    chat_key INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    until_seq INTEGER NOT NULL,
    resume_seq INTEGER,
    PRIMARY KEY (chat_key, device_id)
  ) WITHOUT ROWID;
  CREATE INDEX departures_by_device ON departures (device_id);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export const DATABASE_FILE_NAME = "remessenger.sqlite";

/** Waiting for another connection's lock beyond this is an error, not a hang. */
export const BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens the writer's connection: WAL so readers never block the writer, and
 * synchronous=FULL so a COMMIT has reached the disk when it returns (NORMAL
 * would lose the last commits on power loss, breaking "durable on resolve").
 */
export function openWriterDatabase(path: string): DatabaseSync {
  const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Opens a read-only connection on a file the writer has already migrated. */
export function openReaderDatabase(path: string): DatabaseSync {
  const db = new DatabaseSync(path, { readOnly: true, timeout: BUSY_TIMEOUT_MS });
  try {
    const version = readSchemaVersion(db);
    if (version !== SCHEMA_VERSION) throw new Error(`${path}: schema version ${version}, expected ${SCHEMA_VERSION}`);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

function migrate(db: DatabaseSync): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    const version = readSchemaVersion(db);
    if (version > SCHEMA_VERSION) {
      throw new Error(
        `database schema version ${version} is newer than this server's ${SCHEMA_VERSION}; upgrade the server`,
      );
    }
    for (let next = version; next < SCHEMA_VERSION; next += 1) db.exec(MIGRATIONS[next] ?? "");
    // PRAGMA takes no bound parameters; the value is our own integer.
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (error) {
    db.exec("ROLLBACK");
    throw error;
  }
}

function readSchemaVersion(db: DatabaseSync): number {
  const row = db.prepare("PRAGMA user_version").get();
  const version = row?.["user_version"];
  if (typeof version !== "number") throw new Error("cannot read the database schema version");
  return version;
}
