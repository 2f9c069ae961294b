import { describe, expect, it } from "vitest";
import { webSocketUrl } from "./websocket-transport.ts";

describe("webSocketUrl", () => {
  it.each([
    ["http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/ws"],
    ["https://chat.example.org", "wss://chat.example.org/v1/ws"],
    ["https://chat.example.org/base/", "wss://chat.example.org/base/v1/ws"],
    ["ws://host:1/?x=1#y", "ws://host:1/v1/ws"],
  ])("maps %s to %s", (base, url) => {
    expect(webSocketUrl(base)).toBe(url);
  });

  it("refuses what is not an http(s) or ws(s) URL", () => {
    expect(() => webSocketUrl("ftp://host")).toThrow(/http\(s\) or ws\(s\)/);
    expect(() => webSocketUrl("not a url")).toThrow(/not a server URL/);
  });
});
