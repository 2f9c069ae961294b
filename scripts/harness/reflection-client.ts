/**
 * Test harness: a gRPC client that knows no .proto file and no generated
 * code, only what server reflection tells, as grpcurl works. It lists
 * services, fetches the file that defines a symbol and every file it imports
 * (by name, as grpcurl does), and calls unary methods with JSON in and out.
 *
 * `grpcurl(commandLine)` runs the subset of grpcurl the docs use:
 * `-plaintext`, `-d JSON`, `-H "name: value"`, then ADDRESS and `list`,
 * `describe SERVICE` or `SERVICE/METHOD`; it returns what grpcurl would print
 * (service names, method names, or the response as JSON).
 */
import { Client, Metadata, credentials } from "@grpc/grpc-js";
import {
  type DescMethod,
  type FileRegistry,
  create,
  createFileRegistry,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createChannel, createClient } from "nice-grpc";
import { ServerReflectionService } from "nice-grpc-server-reflection";
import reflectionPb from "nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js";

/** One reflection request and its one response. */
async function reflect(
  address: string,
  fill: (request: reflectionPb.ServerReflectionRequest) => void,
): Promise<reflectionPb.ServerReflectionResponse> {
  const channel = createChannel(address);
  try {
    const client = createClient(ServerReflectionService, channel);
    const request = new reflectionPb.ServerReflectionRequest();
    fill(request);
    const requests = (async function* () {
      yield await Promise.resolve(request);
    })();
    for await (const response of client.serverReflectionInfo(requests)) return response;
    throw new Error("no reflection response");
  } finally {
    channel.close();
  }
}

export async function listServices(address: string): Promise<string[]> {
  const response = await reflect(address, (request) => request.setListServices(""));
  return (response.getListServicesResponse()?.getServiceList() ?? []).map((service) => service.getName());
}

/** The files defining `symbol` and everything they import, as a registry. */
export async function registryFor(address: string, symbol: string): Promise<FileRegistry> {
  const fetched = new Map<string, FileDescriptorProto>();
  const take = (response: reflectionPb.ServerReflectionResponse): void => {
    for (const bytes of response.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? []) {
      const file = fromBinary(FileDescriptorProtoSchema, bytes);
      fetched.set(file.name, file);
    }
  };
  take(await reflect(address, (request) => request.setFileContainingSymbol(symbol)));
  for (let round = 0; round < 10; round += 1) {
    const missing = [...fetched.values()].flatMap((file) => file.dependency).filter((name) => !fetched.has(name));
    if (missing.length === 0) break;
    for (const name of missing) take(await reflect(address, (request) => request.setFileByFilename(name)));
  }
  // Dependencies first, as a descriptor set lists them.
  const ordered: FileDescriptorProto[] = [];
  const visit = (name: string): void => {
    const file = fetched.get(name);
    if (file === undefined || ordered.includes(file)) return;
    for (const dependency of file.dependency) visit(dependency);
    ordered.push(file);
  };
  for (const name of fetched.keys()) visit(name);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

/** The method `service/Method` as reflection describes it, and the registry it came from. */
export async function describeMethod(
  address: string,
  path: string,
): Promise<{ method: DescMethod; registry: FileRegistry }> {
  const [serviceName = "", methodName = ""] = path.split("/");
  const registry = await registryFor(address, serviceName);
  const method = registry.getService(serviceName)?.methods.find((m) => m.name === methodName);
  if (method === undefined) throw new Error(`reflection does not describe ${path}`);
  return { method, registry };
}

/** Calls a unary method with a JSON request; resolves with the JSON response. */
export async function callUnary(
  address: string,
  path: string,
  request: JsonValue,
  headers: Record<string, string> = {},
): Promise<JsonValue> {
  const { method, registry } = await describeMethod(address, path);
  const client = new Client(address, credentials.createInsecure());
  const metadata = new Metadata();
  for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
  try {
    const response = await new Promise<unknown>((resolve, reject) => {
      client.makeUnaryRequest(
        `/${path}`,
        (message: unknown) => Buffer.from(toBinary(method.input, message as never)),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        fromJson(method.input, request, { registry }),
        metadata,
        (error, value) => (error ? reject(error) : resolve(value)),
      );
    });
    return toJson(method.output, response as never, { registry });
  } finally {
    client.close();
  }
}

/** Splits a shell command line into words: single and double quotes, no expansion. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) words.push(match[1] ?? match[2] ?? match[3] ?? "");
  return words;
}

/** Runs one grpcurl command line (the subset above); returns its output. */
export async function grpcurl(line: string): Promise<string> {
  const [command, ...words] = shellWords(line);
  if (command !== "grpcurl") throw new Error(`not a grpcurl command: ${line}`);
  let data: JsonValue = {};
  const headers: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 0; i < words.length; i += 1) {
    const word = words[i] ?? "";
    if (word === "-plaintext") continue;
    if (word === "-d") data = JSON.parse(words[(i += 1)] ?? "{}") as JsonValue;
    else if (word === "-H") {
      const [name = "", ...value] = (words[(i += 1)] ?? "").split(":");
      headers[name.trim().toLowerCase()] = value.join(":").trim();
    } else if (word.startsWith("-")) throw new Error(`flag ${word} is not in the subset`);
    else positional.push(word);
  }
  const [address = "", verb = "", symbol = ""] = positional;
  if (verb === "list") return (await listServices(address)).join("\n");
  if (verb === "describe") {
    const service = (await registryFor(address, symbol)).getService(symbol);
    if (service === undefined) throw new Error(`reflection does not describe ${symbol}`);
    return service.methods.map((m) => `${m.name}(${m.input.typeName}) returns (${m.output.typeName})`).join("\n");
  }
  return JSON.stringify(await callUnary(address, verb, data, headers));
}
