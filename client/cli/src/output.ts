/**
 * Everything the CLI prints goes through here, so --json is honoured in one
 * place: results and message lines on stdout (one JSON object per line in
 * JSON mode), notes and connection status for people on stderr.
 */
import type { Writable } from "node:stream";

export class Output {
  readonly isJson: boolean;
  private readonly stdout: Writable;
  private readonly stderr: Writable;

  constructor(isJson: boolean, stdout: Writable = process.stdout, stderr: Writable = process.stderr) {
    this.isJson = isJson;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  /** A result or a stream item: `json` in JSON mode, `text` otherwise. */
  print(json: object, text: string): void {
    this.stdout.write(this.isJson ? `${JSON.stringify(json)}\n` : `${text}\n`);
  }

  /** A status event: a JSON line on stdout in JSON mode, a line on stderr for people. */
  status(json: object, text: string): void {
    if (this.isJson) this.stdout.write(`${JSON.stringify(json)}\n`);
    else this.stderr.write(`${text}\n`);
  }

  /** A note for people (warnings, hints); stderr in both modes, so stdout stays parseable. */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  error(code: string, message: string): void {
    this.stderr.write(this.isJson ? `${JSON.stringify({ error: { code, message } })}\n` : `remessenger: ${message}\n`);
  }

  /** Resolves when everything written so far has been handed to the OS (before exiting). */
  async flush(): Promise<void> {
    await Promise.all([drained(this.stdout), drained(this.stderr)]);
  }
}

function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    stream.write("", () => {
      resolve();
    });
  });
}
