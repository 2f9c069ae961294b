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
 */
import { DatabaseSync } from "node:sqlite";

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
    chat_id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    title TEXT NOT NULL,
    created_by_user_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    head_seq INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE chat_members (
    chat_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (chat_id, position)
  ) WITHOUT ROWID;
  CREATE INDEX chat_members_by_user ON chat_members (user_id, chat_id);
  CREATE TABLE cursors (
    chat_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    through_seq INTEGER NOT NULL,
    PRIMARY KEY (chat_id, device_id)
  ) WITHOUT ROWID;
  CREATE TABLE messages (
    chat_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (chat_id, seq)
  );
  CREATE TABLE message_ids (
    chat_id TEXT NOT NULL,
    message_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    sender_device_id TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
  ) WITHOUT ROWID;
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
