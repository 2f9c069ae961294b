import { describe, expect, it } from "vitest";
import { parseCliConfig } from "./cli-config.ts";

describe("parseCliConfig", () => {
  it("defaults the profile to ~/.remessenger, the server to the profile's, and logs to silent", () => {
    expect(parseCliConfig({}, {}, "/home/ann")).toEqual({
      profileDir: "/home/ann/.remessenger",
      explicitServerUrl: undefined,
      isJson: false,
      logLevel: "silent",
    });
  });

  it("takes REMESSENGER_* variables, and flags over them", () => {
    const env = { REMESSENGER_PROFILE: "/p", REMESSENGER_SERVER: "http://a:1", REMESSENGER_LOG_LEVEL: "debug" };
    expect(parseCliConfig({}, env, "/h")).toMatchObject({
      profileDir: "/p",
      explicitServerUrl: "http://a:1",
      logLevel: "debug",
    });
    expect(parseCliConfig({ profile: "/q", server: "https://b", json: true, logLevel: "warn" }, env, "/h")).toEqual({
      profileDir: "/q",
      explicitServerUrl: "https://b",
      isJson: true,
      logLevel: "warn",
    });
  });

  it("refuses a bad server URL or log level as bad input", () => {
    expect(() => parseCliConfig({ server: "ftp://x" }, {}, "/h")).toThrow(expect.objectContaining({ exitCode: 2 }));
    expect(() => parseCliConfig({ logLevel: "loud" }, {}, "/h")).toThrow(/log level/);
  });
});
