import { describe, expect, it } from "vitest";
import type { MessengerSession } from "./messenger-session.ts";
import { MessengerNotRunningError, SessionLifecycle } from "./session-lifecycle.ts";

/** Just enough of a session for the lifecycle: it records start and stop, and may fail to start. */
function recordingFactory(log: string[], failingStarts: Set<number> = new Set()) {
  let made = 0;
  return () => {
    made += 1;
    const id = made;
    const session = {
      start: () => {
        log.push(`start ${id}`);
        return failingStarts.has(id) ? Promise.reject(new Error(`session ${id} failed`)) : Promise.resolve();
      },
      stop: () => {
        log.push(`stop ${id}`);
        return Promise.resolve();
      },
    };
    return session as unknown as MessengerSession;
  };
}

function hooks(log: string[]) {
  return {
    attach: () => {
      log.push("attach");
      return () => log.push("detach");
    },
    beforeRun: () => Promise.resolve(),
    afterRun: () => undefined,
  };
}

describe("SessionLifecycle", () => {
  it("applies quick suspend/resume flips in call order, each resume on a new session", async () => {
    const log: string[] = [];
    const life = new SessionLifecycle(recordingFactory(log), {}, hooks(log));
    await life.start();
    const flips = [life.suspend(), life.resume(), life.suspend(), life.resume()];
    await Promise.all(flips);
    expect(life.state.value).toBe("running");
    expect(log).toEqual([
      "attach",
      "start 1",
      "stop 1",
      "detach",
      "attach",
      "start 2",
      "stop 2",
      "detach",
      "attach",
      "start 3",
    ]);
  });

  it("refuses calls while suspended, and never runs again once stopped", async () => {
    const log: string[] = [];
    const life = new SessionLifecycle(recordingFactory(log), {}, hooks(log));
    expect(() => life.current()).toThrow(MessengerNotRunningError);
    await life.start();
    expect(life.current()).toBeDefined();
    await life.suspend();
    expect(() => life.current()).toThrow(/suspended/);
    await life.stop();
    await life.resume();
    await expect(life.start()).rejects.toThrow(/stopped/);
    expect(life.state.value).toBe("stopped");
  });

  it("stays where it was when a session fails to start, and unwires it", async () => {
    const log: string[] = [];
    const life = new SessionLifecycle(recordingFactory(log, new Set([2])), {}, hooks(log));
    await life.start();
    await life.suspend();
    await expect(life.resume()).rejects.toThrow(/session 2 failed/);
    expect(life.state.value).toBe("suspended");
    await life.resume();
    expect(life.state.value).toBe("running");
    expect(log.slice(-5)).toEqual(["attach", "start 2", "detach", "attach", "start 3"]);
  });
});
