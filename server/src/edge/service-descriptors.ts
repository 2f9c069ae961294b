/**
 * The descriptors of the public services, for the two things that need the
 * schema at run time: gRPC server reflection (grpcurl and load tools work
 * without the .proto files) and the gRPC-web edge (Connect reads and writes
 * messages by descriptor).
 *
 * gen/remessenger-v1.binpb is the FileDescriptorSet `npm run gen` builds from
 * proto/remessenger/v1 (checked fresh like the rest of gen/). The standard
 * health service ships without descriptors in nice-grpc-server-health, so its
 * file (grpc/health/v1/health.proto, as published by gRPC) is added here.
 */
import { readFileSync } from "node:fs";
import { type FileRegistry, create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
} from "@bufbuild/protobuf/wkt";

const DESCRIPTOR_SET = new URL("../../../gen/remessenger-v1.binpb", import.meta.url);

export const HEALTH_SERVICE = "grpc.health.v1.Health";

/** grpc/health/v1/health.proto, field for field. */
function healthFile(): FileDescriptorProto {
  const optionalField = { label: FieldDescriptorProto_Label.OPTIONAL, number: 1 };
  return create(FileDescriptorProtoSchema, {
    name: "grpc/health/v1/health.proto",
    package: "grpc.health.v1",
    syntax: "proto3",
    messageType: [
      {
        name: "HealthCheckRequest",
        field: [{ ...optionalField, name: "service", jsonName: "service", type: FieldDescriptorProto_Type.STRING }],
      },
      {
        name: "HealthCheckResponse",
        field: [
          {
            ...optionalField,
            name: "status",
            jsonName: "status",
            type: FieldDescriptorProto_Type.ENUM,
            typeName: ".grpc.health.v1.HealthCheckResponse.ServingStatus",
          },
        ],
        enumType: [
          {
            name: "ServingStatus",
            value: [
              { name: "UNKNOWN", number: 0 },
              { name: "SERVING", number: 1 },
              { name: "NOT_SERVING", number: 2 },
              { name: "SERVICE_UNKNOWN", number: 3 },
            ],
          },
        ],
      },
    ],
    service: [
      {
        name: "Health",
        method: [
          {
            name: "Check",
            inputType: ".grpc.health.v1.HealthCheckRequest",
            outputType: ".grpc.health.v1.HealthCheckResponse",
          },
          {
            name: "Watch",
            inputType: ".grpc.health.v1.HealthCheckRequest",
            outputType: ".grpc.health.v1.HealthCheckResponse",
            serverStreaming: true,
          },
        ],
      },
    ],
  });
}

export interface ServiceDescriptors {
  /** Encoded FileDescriptorSet: our services and the health service. */
  protoset: Uint8Array;
  registry: FileRegistry;
  /** Full names of our public services (remessenger.v1.*). */
  serviceNames: string[];
}

let loaded: ServiceDescriptors | undefined;

export function serviceDescriptors(): ServiceDescriptors {
  if (loaded !== undefined) return loaded;
  const set = fromBinary(FileDescriptorSetSchema, new Uint8Array(readFileSync(DESCRIPTOR_SET)));
  const serviceNames = set.file.flatMap((file) => file.service.map((service) => `${file.package}.${service.name}`));
  set.file.push(healthFile());
  loaded = { protoset: toBinary(FileDescriptorSetSchema, set), registry: createFileRegistry(set), serviceNames };
  return loaded;
}
