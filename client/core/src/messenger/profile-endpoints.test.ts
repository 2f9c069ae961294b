import { describe, expect, it } from "vitest";
import { transportEndpointsOf, tunnelFromHello, withEndpointOverrides } from "./profile-endpoints.ts";

const PROFILE = {
  serverUrl: "http://a:8080",
  userId: "u",
  deviceId: "d",
  displayName: "A",
  registeredAtMs: 1,
  tunnel: { zone: "t.example", publicKey: "k" },
};

describe("endpoint overrides", () => {
  it("leave the profile as it is (the same object) when they name nothing new", () => {
    expect(withEndpointOverrides(PROFILE, {})).toBe(PROFILE);
    expect(withEndpointOverrides(PROFILE, { dohUrls: [] })).toBe(PROFILE);
    const remembered = { ...PROFILE, dohUrls: ["https://r/dns-query"], resolver: { host: "10.0.0.1", port: 53 } };
    expect(
      withEndpointOverrides(remembered, {
        serverUrl: "http://a:8080",
        dohUrls: ["https://r/dns-query"],
        resolver: { host: "10.0.0.1", port: 53 },
      }),
    ).toBe(remembered);
  });

  it("replace what the profile had, each on its own, and are what the transports then use", () => {
    const next = withEndpointOverrides(PROFILE, { resolver: { host: "10.0.0.1", port: 5353 } });
    expect(next).toMatchObject({ serverUrl: "http://a:8080", resolver: { host: "10.0.0.1", port: 5353 } });
    const later = withEndpointOverrides(next, { dohUrls: ["https://r/dns-query"] });
    expect(transportEndpointsOf(later)).toEqual({
      serverUrls: "http://a:8080",
      tunnel: PROFILE.tunnel,
      dohUrls: ["https://r/dns-query"],
    });
    expect(withEndpointOverrides(later, { serverUrl: "http://b:8080,http://c:8080" }).serverUrl).toBe(
      "http://b:8080,http://c:8080",
    );
  });
});

describe("the tunnel a hello announces", () => {
  it("is kept with its key in base64url, and a hello without a zone announces none", () => {
    expect(tunnelFromHello({ zone: "t.example", publicKey: new Uint8Array(32).fill(0xff) })).toEqual({
      zone: "t.example",
      publicKey: "_".repeat(42) + "8",
    });
    expect(tunnelFromHello({ zone: "", publicKey: new Uint8Array(32) })).toBeUndefined();
    expect(tunnelFromHello(undefined)).toBeUndefined();
  });
});
