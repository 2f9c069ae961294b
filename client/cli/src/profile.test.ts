import { describe, expect, it } from "vitest";
import { endpointsOf, withOverrides } from "./profile.ts";

const PROFILE = {
  serverUrl: "http://a:8080",
  userId: "u",
  deviceId: "d",
  displayName: "A",
  registeredAtMs: 1,
  tunnel: { zone: "t.example", publicKey: "k" },
};
const NONE = { explicitServerUrl: undefined, dohUrls: [], resolver: undefined };

describe("endpoints named on the command line", () => {
  it("leave the profile as it is when they name nothing new", () => {
    expect(withOverrides(PROFILE, NONE)).toBe(PROFILE);
    const remembered = { ...PROFILE, dohUrls: ["https://r/dns-query"], resolver: { host: "10.0.0.1", port: 53 } };
    expect(
      withOverrides(remembered, {
        explicitServerUrl: "http://a:8080",
        dohUrls: ["https://r/dns-query"],
        resolver: { host: "10.0.0.1", port: 53 },
      }),
    ).toBe(remembered);
  });

  it("replace what the profile had, each on its own, and are what the transports then use", () => {
    const next = withOverrides(PROFILE, { ...NONE, resolver: { host: "10.0.0.1", port: 5353 } });
    expect(next).toMatchObject({ serverUrl: "http://a:8080", resolver: { host: "10.0.0.1", port: 5353 } });
    const later = withOverrides(next, { ...NONE, dohUrls: ["https://r/dns-query"] });
    expect(endpointsOf(later)).toEqual({
      serverUrls: "http://a:8080",
      tunnel: PROFILE.tunnel,
      dohUrls: ["https://r/dns-query"],
      resolver: { host: "10.0.0.1", port: 5353 },
    });
    expect(withOverrides(later, { ...NONE, explicitServerUrl: "http://b:8080,http://c:8080" }).serverUrl).toBe(
      "http://b:8080,http://c:8080",
    );
  });
});
