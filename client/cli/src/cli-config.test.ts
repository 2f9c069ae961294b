import { describe, expect, it } from "vitest";
import { DEFAULT_GRACE_WINDOW, SIGNED_PREKEY_GRACE_MS, SIGNED_PREKEY_ROTATION_MS } from "@remessenger/client-core";
import { parseCliConfig } from "./cli-config.ts";

describe("parseCliConfig", () => {
  it("defaults the profile to ~/.remessenger, the server to the profile's, and logs to silent", () => {
    expect(parseCliConfig({}, {}, "/home/ann")).toEqual({
      profileDir: "/home/ann/.remessenger",
      explicitServerUrl: undefined,
      isJson: false,
      logLevel: "silent",
      transport: "auto",
      resolver: undefined,
      dohUrls: [],
      nameBudget: undefined,
      groupWindow: DEFAULT_GRACE_WINDOW,
      signedPreKeys: { rotationMs: SIGNED_PREKEY_ROTATION_MS, graceMs: SIGNED_PREKEY_GRACE_MS },
    });
  });

  it("takes several servers, comma-separated, and checks each", () => {
    expect(parseCliConfig({ server: "http://a:1,http://b:2" }, {}, "/h")).toMatchObject({
      explicitServerUrl: "http://a:1,http://b:2",
    });
    expect(() => parseCliConfig({ server: "http://a:1,ftp://b" }, {}, "/h")).toThrow(/http\(s\) or ws\(s\)/);
    expect(() => parseCliConfig({ server: " , " }, {}, "/h")).toThrow(/needs a URL/);
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
      transport: "auto",
      resolver: undefined,
      dohUrls: [],
      nameBudget: undefined,
      groupWindow: DEFAULT_GRACE_WINDOW,
      signedPreKeys: { rotationMs: SIGNED_PREKEY_ROTATION_MS, graceMs: SIGNED_PREKEY_GRACE_MS },
    });
  });

  it("picks the pipe and its resolvers from flags or env", () => {
    const env = { REMESSENGER_TRANSPORT: "doh", REMESSENGER_DOH_URL: "https://a/dns-query, https://b/dns-query" };
    expect(parseCliConfig({}, env, "/h")).toMatchObject({
      transport: "doh",
      dohUrls: ["https://a/dns-query", "https://b/dns-query"],
    });
    expect(
      parseCliConfig(
        { transport: "dns", resolver: "[::1]:5353", nameBudget: "72", dohUrl: ["https://c/q"] },
        env,
        "/h",
      ),
    ).toMatchObject({
      transport: "dns",
      resolver: { host: "::1", port: 5353 },
      nameBudget: 72,
      dohUrls: ["https://c/q"],
    });
    expect(parseCliConfig({ resolver: "9.9.9.9" }, {}, "/h").resolver).toEqual({ host: "9.9.9.9", port: 53 });
    expect(() => parseCliConfig({ transport: "carrier-pigeon" }, {}, "/h")).toThrow(/--transport must be one of/);
    expect(() => parseCliConfig({ resolver: "a:b:c" }, {}, "/h")).toThrow(/--resolver/);
    expect(() => parseCliConfig({ dohUrl: ["ftp://x"] }, {}, "/h")).toThrow(/--doh-url/);
    expect(() => parseCliConfig({ nameBudget: "20" }, {}, "/h")).toThrow(/--name-budget/);
  });

  it("takes a group's grace window from the environment", () => {
    const env = { REMESSENGER_GROUP_GRACE_MS: "5000", REMESSENGER_GROUP_GRACE_MESSAGES: "3" };
    expect(parseCliConfig({}, env, "/h").groupWindow).toEqual({ ms: 5000, messages: 3 });
    expect(parseCliConfig({}, { REMESSENGER_GROUP_GRACE_MESSAGES: "7" }, "/h").groupWindow).toEqual({
      ms: DEFAULT_GRACE_WINDOW.ms,
      messages: 7,
    });
    expect(() => parseCliConfig({}, { REMESSENGER_GROUP_GRACE_MS: "soon" }, "/h")).toThrow(/GRACE_MS/);
  });

  it("takes the signed prekey rotation from the environment", () => {
    expect(parseCliConfig({}, {}, "/h").signedPreKeys).toEqual({
      rotationMs: SIGNED_PREKEY_ROTATION_MS,
      graceMs: SIGNED_PREKEY_GRACE_MS,
    });
    const env = { REMESSENGER_SIGNED_PREKEY_ROTATION_MS: "3600000", REMESSENGER_SIGNED_PREKEY_GRACE_MS: "0" };
    expect(parseCliConfig({}, env, "/h").signedPreKeys).toEqual({ rotationMs: 3_600_000, graceMs: 0 });
    expect(() => parseCliConfig({}, { REMESSENGER_SIGNED_PREKEY_ROTATION_MS: "0" }, "/h")).toThrow(/at least 1/);
    expect(() => parseCliConfig({}, { REMESSENGER_SIGNED_PREKEY_GRACE_MS: "a week" }, "/h")).toThrow(/GRACE_MS/);
  });

  it("refuses a bad server URL or log level as bad input", () => {
    expect(() => parseCliConfig({ server: "ftp://x" }, {}, "/h")).toThrow(expect.objectContaining({ exitCode: 2 }));
    expect(() => parseCliConfig({ logLevel: "loud" }, {}, "/h")).toThrow(/log level/);
  });
});
