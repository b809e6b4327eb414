'use strict';
// A small promise/async-iterator client for harag.v1.RagGatewayService.
//
//   const { HaragClient } = require('./lib/client');
//   const client = new HaragClient('127.0.0.1:50051', { apiKey: process.env.HARAG_API_KEY });
//   const reply = await client.query('What is BM25?', { deadlineMs: 3000 });
//   for await (const event of client.streamQuery('What is BM25?')) { ... }
//
// Failed calls reject with a HaragRpcError carrying the decoded google.rpc.Status details,
// so `error.fieldViolations` says which request field was wrong.

const grpc = require('@grpc/grpc-js');
const { haragV1 } = require('./protos');
const { codeName, statusOfError, fieldViolations } = require('./status');

const DEFAULT_ADDRESS = '127.0.0.1:50051';
const DEFAULT_DEADLINE_MS = 10_000;

/** The API key to send: the apiKey option, else HARAG_API_KEY, else none. */
function defaultApiKey() {
  return process.env.HARAG_API_KEY || undefined;
}

/** The gateway address: HARAG_GATEWAY, else the default local port. */
function defaultAddress() {
  return process.env.HARAG_GATEWAY || DEFAULT_ADDRESS;
}

class HaragRpcError extends Error {
  /** Wraps a grpc-js ServiceError; `details` are the decoded google.rpc.Status details. */
  constructor(error) {
    const status = statusOfError(error);
    super(`${codeName(error.code)}: ${error.details}`, { cause: error });
    this.name = 'HaragRpcError';
    this.code = error.code;
    this.codeName = codeName(error.code);
    this.statusMessage = error.details;
    this.details = status ? status.details : [];
    this.metadata = error.metadata;
  }

  /** Every field the server rejected: [{field, description, ...}] from BadRequest details. */
  get fieldViolations() {
    return fieldViolations(this.details);
  }

  toJSON() {
    return {
      code: this.code,
      codeName: this.codeName,
      message: this.statusMessage,
      details: this.details,
    };
  }
}

function toRpcError(error) {
  // Only errors with a status code came from the call; anything else is a bug to surface as is.
  return typeof error?.code === 'number' && error.metadata ? new HaragRpcError(error) : error;
}

function queryRequest(query, { topK, filters } = {}) {
  const request = { query, filters: filters || [] };
  // top_k is a proto3 `optional`: leave it out to get the server default.
  if (topK !== undefined && topK !== null) request.topK = topK;
  return request;
}

class HaragClient {
  /**
   * @param {string} [address] host:port of the gateway (default: HARAG_GATEWAY or 127.0.0.1:50051)
   * @param {object} [options]
   * @param {grpc.ChannelCredentials} [options.credentials] default: insecure (plaintext)
   * @param {number} [options.deadlineMs] per-call deadline used when a call gives none
   * @param {grpc.ChannelOptions} [options.channelOptions]
   * @param {string} [options.apiKey] sent as `authorization: Bearer <key>` with every call
   *   (default: HARAG_API_KEY; none when neither is set)
   */
  constructor(address = defaultAddress(), options = {}) {
    const { RagGatewayService } = haragV1();
    this.address = address;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const apiKey = options.apiKey ?? defaultApiKey();
    if (apiKey !== undefined && (typeof apiKey !== 'string' || !apiKey || /\s/.test(apiKey))) {
      throw new TypeError('apiKey must be a non-empty string without whitespace');
    }
    this.metadata = new grpc.Metadata();
    if (apiKey) this.metadata.set('authorization', `Bearer ${apiKey}`);
    this.stub = new RagGatewayService(
      address,
      options.credentials || grpc.credentials.createInsecure(),
      options.channelOptions,
    );
  }

  callOptions(deadlineMs) {
    // An absolute deadline: gRPC propagates the remaining budget to the gateway, which plans
    // its fallbacks inside it.
    return { deadline: new Date(Date.now() + (deadlineMs ?? this.deadlineMs)) };
  }

  unary(method, request, deadlineMs) {
    return new Promise((resolve, reject) => {
      this.stub[method](request, this.metadata, this.callOptions(deadlineMs), (error, response) =>
        error ? reject(toRpcError(error)) : resolve(response),
      );
    });
  }

  /** Answers a question. Options: topK, filters [{key, values}], deadlineMs. */
  query(query, options = {}) {
    return this.unary('query', queryRequest(query, options), options.deadlineMs);
  }

  /**
   * Streams an answer: yields {event: 'sources', sources}, then {event: 'chunk', chunk} as the
   * text is generated, then {event: 'final', final}. Leaving the loop early cancels the call.
   */
  async *streamQuery(query, options = {}) {
    const call = this.stub.streamQuery(
      queryRequest(query, options),
      this.metadata,
      this.callOptions(options.deadlineMs),
    );
    try {
      for await (const event of call) yield event;
    } catch (error) {
      throw toRpcError(error);
    } finally {
      call.cancel();
    }
  }

  /** Ingests documents [{id, text, metadata}]; resolves to the per-document report. */
  ingest(documents, options = {}) {
    return this.unary('ingest', { documents }, options.deadlineMs);
  }

  /** The gateway's view of its upstreams: overall status, breakers, health, latency. */
  getSystemHealth(options = {}) {
    return this.unary('getSystemHealth', {}, options.deadlineMs);
  }

  close() {
    this.stub.close();
  }
}

module.exports = { HaragClient, HaragRpcError, defaultAddress, DEFAULT_ADDRESS };
