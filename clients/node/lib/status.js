'use strict';
// The gRPC rich error model: a server that fails a call may attach a serialized
// google.rpc.Status in the `grpc-status-details-bin` trailer, whose `details` carry typed
// messages (BadRequest naming each invalid field, RetryInfo, ErrorInfo, ...). grpc-js hands
// the trailer over as raw bytes; this module turns it into plain objects.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');

const DETAILS_TRAILER = 'grpc-status-details-bin';
const VENDOR_DIR = path.resolve(__dirname, '..', 'vendor');
// Same shape as the messages proto-loader produces (see protos.js).
const TO_OBJECT = Object.freeze({ longs: String, enums: String, defaults: true, oneofs: true });

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

let root;

function rpcTypes() {
  if (!root) {
    root = new protobuf.Root();
    // google/protobuf/*.proto imports resolve to protobufjs' bundled well-known types.
    root.resolvePath = (_origin, target) => path.join(VENDOR_DIR, target);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  }
  return root;
}

/** The name of a canonical status code, e.g. 3 -> "INVALID_ARGUMENT". */
function codeName(code) {
  return CODE_NAMES[code] || `CODE_${code}`;
}

/**
 * Decodes one detail (a google.protobuf.Any). Known types become plain objects tagged with
 * "@type" as in the proto3 JSON mapping; unknown ones keep their bytes, base64-encoded.
 */
function decodeAny(any) {
  // protobufjs' bundled Any keeps the proto field name (type_url), unlike .proto-parsed types.
  const typeUrl = any.type_url ?? any.typeUrl;
  const type = rpcTypes().lookup(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  if (!(type instanceof protobuf.Type)) {
    return { '@type': typeUrl, value: Buffer.from(any.value).toString('base64') };
  }
  return { '@type': typeUrl, ...type.toObject(type.decode(any.value), TO_OBJECT) };
}

/** Decodes a serialized google.rpc.Status into {code, message, details: [...]}. */
function decodeStatus(bytes) {
  const Status = rpcTypes().lookupType('google.rpc.Status');
  const status = Status.decode(bytes);
  return { code: status.code, message: status.message, details: status.details.map(decodeAny) };
}

/** The decoded google.rpc.Status of a grpc-js error, or null when the server sent none. */
function statusOfError(error) {
  const [bytes] = error && error.metadata ? error.metadata.get(DETAILS_TRAILER) : [];
  return bytes ? decodeStatus(bytes) : null;
}

/** Every field violation of every BadRequest detail: [{field, description, reason, ...}]. */
function fieldViolations(details) {
  return details
    .filter((detail) => detail['@type'].endsWith('/google.rpc.BadRequest'))
    .flatMap((detail) => detail.fieldViolations);
}

module.exports = { DETAILS_TRAILER, codeName, decodeStatus, statusOfError, fieldViolations };
