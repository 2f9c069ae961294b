/**
 * The `remessenger` command line: a thin shell over the client core. It
 * parses arguments (commander), builds the config once, runs one command, and
 * turns every outcome into output and an exit code (see cli-error.ts).
 *
 *   remessenger [--profile DIR] [--server URL] [--json] init --name NAME
 *   remessenger chat create --with USER_ID [--with USER_ID ...] [--title T]
 *   remessenger chat list | contacts | status
 *   remessenger group create --name NAME --members ID,ID | group add|remove|promote|demote CHAT USER
 *   remessenger group rename CHAT TITLE | group rotate|leave|members CHAT
 *   remessenger send CHAT_ID TEXT [--wait] [--timeout MS]
 *   remessenger listen [--exit-after N]
 */
import { homedir } from "node:os";
import { createInterface } from "node:readline";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import packageJson from "../package.json" with { type: "json" };
import { type CliConfig, type GlobalFlags, parseCliConfig } from "./cli-config.ts";
import { EXIT_OK, EXIT_USAGE, describeFailure } from "./cli-error.ts";
import { type CommandContext, createLogger } from "./cli-session.ts";
import { chatCreateCommand, chatListCommand } from "./commands/chat.ts";
import { contactsCommand } from "./commands/contacts.ts";
import {
  type MemberChangeKind,
  groupChangeCommand,
  groupCreateCommand,
  groupMembersCommand,
} from "./commands/group.ts";
import { initCommand } from "./commands/init.ts";
import { inviteCommand } from "./commands/invite.ts";
import { listenCommand } from "./commands/listen.ts";
import { DEFAULT_WAIT_TIMEOUT_MS, sendCommand } from "./commands/send.ts";
import { statusCommand } from "./commands/status.ts";
import { verifyCommand } from "./commands/verify.ts";
import { linkApproveCommand, linkFinishCommand, linkRequestCommand } from "./commands/link.ts";
import { Output } from "./output.ts";
import { configureKeyVault } from "./profile.ts";

function positiveInteger(name: string, allowZero: boolean): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || (!allowZero && parsed === 0)) {
      throw new InvalidArgumentError(`${name} must be a ${allowZero ? "non-negative" : "positive"} whole number`);
    }
    return parsed;
  };
}

/** Standard input's lines (empty lines skipped), for send --stdin. */
async function readLines(): Promise<string[]> {
  const lines: string[] = [];
  const reader = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of reader) if (line.length > 0) lines.push(line);
  return lines;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs the CLI; resolves with the exit code. */
export async function run(argv: readonly string[], signal: AbortSignal): Promise<number> {
  let output = new Output(argv.includes("--json"));
  let config: CliConfig | undefined;

  const contextOf = (command: Command): CommandContext => {
    config = parseCliConfig(command.optsWithGlobals<GlobalFlags>(), process.env, homedir());
    configureKeyVault(config);
    output = new Output(config.isJson);
    return { config, output, logger: createLogger(config), signal };
  };

  const program = new Command("remessenger")
    .description("Re:Messenger command-line client")
    .version(packageJson.version)
    .option("--profile <dir>", "profile directory (default: $REMESSENGER_PROFILE or ~/.remessenger)")
    .option(
      "--server <url>",
      "server base URL, or several nodes comma-separated (used in turn when one is down; default: the profile's, else http://127.0.0.1:8080)",
    )
    .option("--json", "machine-readable output: one JSON object per line")
    .option("--log-level <level>", "diagnostics on stderr: silent, error, warn, info, debug")
    .option(
      "--transport <kind>",
      "ws, https, doh, dns or auto (default auto: all of them, best first, switching by themselves)",
    )
    .option(
      "--resolver <host:port>",
      "plain-DNS resolver of the tunnel, remembered in the profile (default: the system's)",
    )
    .option(
      "--doh-url <url>",
      "DoH resolver of the tunnel, repeatable, remembered in the profile (default: the server's /dns-query)",
      collect,
      [],
    )
    .option(
      "--name-budget <chars>",
      "longest DNS query name the tunnel uses (default 253; 101 and 72 for capped networks)",
    )
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => {
        write(text);
      },
    });

  program
    .command("init")
    .description("create this profile's identity and register it as a new user; prints the user id")
    .requiredOption("--name <name>", "your display name")
    .option("--invite <string>", "an invite (remessenger invite): server, DNS tunnel zone and key")
    .action(async (options: { name: string; invite?: string }, command: Command) => {
      await initCommand(contextOf(command), options);
    });

  program
    .command("invite")
    .description("print an invite string (server URL, DNS tunnel zone and key) for someone who can only reach DNS")
    .action(async (_options: unknown, command: Command) => {
      await inviteCommand(contextOf(command));
    });

  const chat = program.command("chat").description("create and list chats");
  chat
    .command("create")
    .description("create a chat (one --with: direct chat; several: group); prints the chat id")
    .requiredOption("--with <userId>", "a member to add (repeatable)", collect, [])
    .option("--title <title>", "group title")
    .action(async (options: { with: string[]; title?: string }, command: Command) => {
      await chatCreateCommand(contextOf(command), options);
    });
  chat
    .command("list")
    .description("list your chats")
    .action(async (_options: unknown, command: Command) => {
      await chatListCommand(contextOf(command));
    });

  const group = program.command("group").description("create groups and change their members (signed by this device)");
  group
    .command("create")
    .description("create a group with you as its admin; prints the chat id")
    .requiredOption("--name <name>", "the group's title")
    .requiredOption("--members <ids>", "the other members' user ids, comma-separated")
    .action(async (options: { name: string; members: string }, command: Command) => {
      await groupCreateCommand(contextOf(command), options);
    });
  const memberChanges: Record<MemberChangeKind, string> = {
    add: "add a member (admins only)",
    remove: "remove a member (admins only)",
    promote: "make a member an admin (admins only)",
    demote: "make an admin a plain member (admins only)",
  };
  for (const [kind, description] of Object.entries(memberChanges) as Array<[MemberChangeKind, string]>) {
    group
      .command(kind)
      .description(description)
      .argument("<chatId>", "the group")
      .argument("<userId>", "the member")
      .action(async (chatId: string, userId: string, _options: unknown, command: Command) => {
        await groupChangeCommand(contextOf(command), chatId, { kind, userIds: [userId] });
      });
  }
  group
    .command("rename")
    .description("change the group's title (admins only)")
    .argument("<chatId>", "the group")
    .argument("<title>", "the new title")
    .action(async (chatId: string, title: string, _options: unknown, command: Command) => {
      await groupChangeCommand(contextOf(command), chatId, { kind: "rename", title });
    });
  group
    .command("rotate")
    .description("start a new epoch: new sender keys for every member (admins only)")
    .argument("<chatId>", "the group")
    .action(async (chatId: string, _options: unknown, command: Command) => {
      await groupChangeCommand(contextOf(command), chatId, { kind: "rotate" });
    });
  group
    .command("leave")
    .description("leave the group")
    .argument("<chatId>", "the group")
    .action(async (chatId: string, _options: unknown, command: Command) => {
      await groupChangeCommand(contextOf(command), chatId, { kind: "leave" });
    });
  group
    .command("members")
    .description("the members and admins as this device verified them, and any operation it refuses")
    .argument("<chatId>", "the group")
    .action(async (chatId: string, _options: unknown, command: Command) => {
      await groupMembersCommand(contextOf(command), chatId);
    });

  program
    .command("contacts")
    .description("list the users you share chats with")
    .action(async (_options: unknown, command: Command) => {
      await contactsCommand(contextOf(command));
    });

  program
    .command("send")
    .description("queue a message (stored before anything is sent) and try to deliver it")
    .argument("<chatId>", "the chat")
    .argument("[text]", "the message (or --stdin)")
    .option("--stdin", "send each line of standard input as a message, in order")
    .option("--wait", "wait until the server has the message (its seq), retrying")
    .option("--timeout <ms>", "how long --wait waits", positiveInteger("--timeout", false), DEFAULT_WAIT_TIMEOUT_MS)
    .action(
      async (
        chatId: string,
        text: string | undefined,
        options: { wait?: boolean; stdin?: boolean; timeout: number },
        command: Command,
      ) => {
        const context = contextOf(command);
        const texts = options.stdin === true ? await readLines() : text === undefined ? [] : [text];
        if (options.stdin !== true && text === undefined)
          throw new InvalidArgumentError("give the message text, or --stdin");
        await sendCommand(context, chatId, texts, {
          wait: options.wait === true || options.stdin === true,
          timeoutMs: options.timeout,
        });
      },
    );

  program
    .command("listen")
    .description("stay connected: show received messages, send the outbox, reconnect by itself")
    .option("--exit-after <n>", "exit after receiving (and acking) n messages", positiveInteger("--exit-after", true))
    .action(async (options: { exitAfter?: number }, command: Command) => {
      await listenCommand(contextOf(command), { exitAfter: options.exitAfter });
    });

  const link = program
    .command("link")
    .description("add a device to your user: request (new), approve (old), finish (new)");
  link
    .command("request")
    .description("on the new device: make its keys and print a link code")
    .action(async (_options: unknown, command: Command) => {
      await linkRequestCommand(contextOf(command));
    });
  link
    .command("approve")
    .description("on an existing device: approve a link code; prints the approval for the new device")
    .argument("<code>", "the code `link request` printed")
    .action(async (code: string, _options: unknown, command: Command) => {
      await linkApproveCommand(contextOf(command), code);
    });
  link
    .command("finish")
    .description("on the new device: join the user with the approval")
    .argument("<approval>", "what `link approve` printed")
    .requiredOption("--name <name>", "this device's display name")
    .action(async (approval: string, options: { name: string }, command: Command) => {
      await linkFinishCommand(contextOf(command), approval, options);
    });

  program
    .command("verify")
    .description("show the safety number with a user and whether their keys changed; --accept trusts the keys shown")
    .argument("<userId>", "the other user")
    .option("--accept", "trust the user's current device keys (after comparing the safety number)")
    .action(async (userId: string, options: { accept?: boolean }, command: Command) => {
      await verifyCommand(contextOf(command), userId, { accept: options.accept === true });
    });

  program
    .command("status")
    .description("connection state, queued messages and the state of every unfinished message")
    .option("--watch", "then stay connected and print every change of the connection state, until interrupted")
    .action(async (options: { watch?: boolean }, command: Command) => {
      await statusCommand(contextOf(command), { watch: options.watch === true });
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander printed the message (or the help / version) already.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const failure = describeFailure(error);
    output.error(failure.code, failure.message);
    if (!failure.isExpected && error instanceof Error && error.stack !== undefined) {
      const level = config?.logLevel ?? "silent";
      if (level === "debug" || level === "trace") output.note(error.stack);
      else output.note("(run with --log-level debug for details)");
    }
    return failure.exitCode;
  } finally {
    await output.flush();
  }
}

/** The process entry point (bin/remessenger.js): exit code, signals, no stray stack traces. */
export async function main(): Promise<void> {
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: NodeJS.Signals): void => {
    signals += 1;
    // First signal: finish gracefully (acks, outbox state). Second: leave now.
    if (signals > 1) process.exit(name === "SIGINT" ? 130 : 143);
    controller.abort(new Error(`interrupted by ${name}`));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // Whoever read our output went away (`listen | head`): finish as on a signal, quietly.
  // Received messages are stored before they are shown, so nothing is lost with the pipe.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    if (!controller.signal.aborted) controller.abort(new Error("standard output was closed"));
  });
  const code = await run(process.argv.slice(2), controller.signal);
  // Sockets still closing must not hold the process: the work is done and flushed.
  process.exit(code);
}
