'use strict';
// Loads the ha-rag contract straight from the .proto files: no generated code, so the
// client cannot drift from protos/ and works with whatever the repository ships.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The client lives in clients/node of the repository; HARAG_PROTOS points elsewhere when the
// client is copied out of it.
const PROTOS_DIR = process.env.HARAG_PROTOS || path.resolve(__dirname, '..', '..', '..', 'protos');

// One set of options for every load, so messages look the same everywhere: camelCase field
// names (as in the proto3 JSON mapping and grpcurl's output), enums as their names, 64-bit
// integers as strings (no precision loss), every field present, and the set oneof named.
const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
});

let cached;

/** Returns the harag.v1 package: service client constructors and message definitions. */
function haragV1() {
  if (!cached) {
    const definition = protoLoader.loadSync('harag/v1/gateway.proto', LOADER_OPTIONS);
    cached = grpc.loadPackageDefinition(definition).harag.v1;
  }
  return cached;
}

module.exports = { PROTOS_DIR, LOADER_OPTIONS, haragV1 };
