/**
 * Where a profile reaches its server, and how endpoints a user names (on a
 * command line, in an app's settings) replace the remembered ones. Pure: the
 * caller saves the profile when `withEndpointOverrides` returns a new one.
 *
 * Invariant: overrides that name nothing new return the very same profile
 * object, so "changed" is an identity check and nothing is saved needlessly.
 */
import { encodeTunnelKey, type TunnelInfo } from "@remessenger/protocol";
import type { TransportEndpoints } from "../connection/create-transports.ts";
import type { DeviceProfile } from "../store/client-store.ts";

/** The endpoint fields of a profile. */
export type ProfileEndpoints = Pick<DeviceProfile, "serverUrl" | "tunnel" | "dohUrls" | "resolver">;

/** Endpoints the user named now; each one given replaces the profile's and is remembered. */
export interface EndpointOverrides {
  /** One URL or several nodes of one deployment, comma-separated. */
  serverUrl?: string | undefined;
  /** DoH resolvers of the tunnel; an empty list names nothing (the profile keeps its own). */
  dohUrls?: readonly string[] | undefined;
  /** The plain-DNS resolver of the tunnel. */
  resolver?: { host: string; port: number } | undefined;
}

/** The profile with the overrides applied; the same object when they change nothing. */
export function withEndpointOverrides<P extends Pick<DeviceProfile, "serverUrl" | "dohUrls" | "resolver">>(
  profile: P,
  overrides: EndpointOverrides,
): P {
  const { serverUrl, dohUrls = [], resolver } = overrides;
  let next = profile;
  if (serverUrl !== undefined && serverUrl !== profile.serverUrl) next = { ...next, serverUrl };
  if (dohUrls.length > 0 && dohUrls.join(" ") !== (profile.dohUrls ?? []).join(" ")) {
    next = { ...next, dohUrls: [...dohUrls] };
  }
  if (resolver !== undefined && (resolver.host !== profile.resolver?.host || resolver.port !== profile.resolver.port)) {
    next = { ...next, resolver: { ...resolver } };
  }
  return next;
}

/** The DNS tunnel a server's hello announced, as a profile keeps it; undefined when it has none. */
export function tunnelFromHello(tunnel: TunnelInfo | undefined): DeviceProfile["tunnel"] {
  return tunnel === undefined || tunnel.zone === ""
    ? undefined
    : { zone: tunnel.zone, publicKey: encodeTunnelKey(tunnel.publicKey) };
}

/** What `createTransports` needs of a profile's endpoints (the resolver goes to the platform's DNS exchange). */
export function transportEndpointsOf(profile: ProfileEndpoints): TransportEndpoints {
  return { serverUrls: profile.serverUrl, tunnel: profile.tunnel, dohUrls: profile.dohUrls ?? [] };
}
