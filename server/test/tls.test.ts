/**
 * --tls-cert/--tls-key: the main listener serves HTTPS with HTTP/2 and
 * HTTP/1.1 on one port (WSS upgrades over HTTP/1.1), and gRPC uses TLS too.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChannelCredentials, createChannel, createClient } from "nice-grpc";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeServerFrame, AuthServiceDefinition } from "@remessenger/protocol";
import { startServer, type TestServer } from "../../scripts/harness/server.ts";

describe("TLS on the main listener and on gRPC", () => {
  let dir: string;
  let server: TestServer;
  let cert: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "remessenger-tls-"));
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ],
      { stdio: "ignore" },
    );
    cert = readFileSync(join(dir, "cert.pem"));
    server = await startServer({
      extraArgs: ["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")],
    });
  });

  afterAll(async () => {
    await server.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("logs an https URL", () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it("answers HTTP/2 and HTTP/1.1 on the same port", async () => {
    const viaH2 = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const session = http2.connect(server.url, { ca: cert, servername: "localhost" });
      session.on("error", reject);
      const request = session.request({ ":path": "/healthz" });
      let body = "";
      let status = 0;
      request.on("response", (headers) => (status = Number(headers[":status"])));
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", () => {
        session.close();
        resolve({ status, body });
      });
      request.end();
    });
    expect(viaH2).toEqual({ status: 200, body: "ok\n" });

    const viaH1 = await new Promise<{ status: number; version: string }>((resolve, reject) => {
      https
        .get(`${server.url}/healthz`, { ca: cert, servername: "localhost" }, (response) => {
          response.resume();
          resolve({ status: response.statusCode ?? 0, version: response.httpVersion });
        })
        .on("error", reject);
    });
    expect(viaH1).toEqual({ status: 200, version: "1.1" });
  });

  it("upgrades WSS and says hello", async () => {
    const socket = new WebSocket(`${server.url.replace(/^https/, "wss")}/v1/ws`, { ca: cert });
    const first = await new Promise<Buffer>((resolve, reject) => {
      socket.once("message", (data: Buffer) => resolve(data));
      socket.once("error", reject);
    });
    expect(decodeServerFrame(new Uint8Array(first)).body.$case).toBe("hello");
    socket.close();
  });

  it("serves gRPC over TLS", async () => {
    const channel = createChannel(server.grpcAddress, ChannelCredentials.createSsl(cert), {
      "grpc.ssl_target_name_override": "localhost",
    });
    try {
      const { nonce } = await createClient(AuthServiceDefinition, channel).getChallenge({});
      expect(nonce).toHaveLength(32);
    } finally {
      channel.close();
    }
  });
});
