#!/usr/bin/env node
'use strict';
// ha-rag from Node: query, stream, ingest and health against the gateway.
// Run `node clients/node/harag.js --help`.

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { HaragClient, HaragRpcError, defaultAddress } = require('./lib/client');
const format = require('./lib/format');

const USAGE = `usage: harag.js <command> [arguments] [options]

commands:
  query <question>     answer a question
  stream <question>    answer a question, printing the text as it is generated
  ingest <file.jsonl>  ingest documents, one JSON object {"id","text","metadata"} per line
                       ("-" reads standard input)
  health               the gateway's view of its upstreams

options:
  --addr <host:port>   gateway address (default: $HARAG_GATEWAY or 127.0.0.1:50051)
  --api-key <key>      API key, sent as "authorization: Bearer <key>" (default: $HARAG_API_KEY)
  --deadline-ms <n>    deadline of each call in milliseconds (default: 10000; ingest 120000)
  --top-k <n>          context documents to retrieve (default: the server's)
  --filter <k=v1,v2>   metadata filter, repeatable; filters combine with AND
  --json               machine-readable output: one JSON document per line
  -h, --help           show this help

exit status: 0 on success, 1 when the call fails, 2 on a usage error.`;

// Ingest at most this many documents per call (the gateway's limit per IngestRequest).
const INGEST_BATCH = 512;

class UsageError extends Error {}

function integer(name, text) {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text)) throw new UsageError(`--${name} must be an integer, got "${text}"`);
  return Number(text);
}

function filters(specs) {
  return specs.map((spec) => {
    const [key, values] = spec.split('=', 2);
    if (!key || values === undefined) throw new UsageError(`--filter must be key=v1,v2, got "${spec}"`);
    return { key, values: values.split(',') };
  });
}

function parse(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      addr: { type: 'string' },
      'api-key': { type: 'string' },
      'deadline-ms': { type: 'string' },
      'top-k': { type: 'string' },
      filter: { type: 'string', multiple: true, default: [] },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...args] = positionals;
  const deadlineMs = integer('deadline-ms', values['deadline-ms']);
  if (deadlineMs !== undefined && deadlineMs <= 0) throw new UsageError('--deadline-ms must be > 0');
  return {
    command,
    args,
    help: values.help,
    json: values.json,
    address: values.addr || defaultAddress(),
    apiKey: values['api-key'],
    deadlineMs,
    topK: integer('top-k', values['top-k']),
    filters: filters(values.filter),
  };
}

function argument(opts, what) {
  if (opts.args.length !== 1) throw new UsageError(`${opts.command} takes exactly one ${what}`);
  return opts.args[0];
}

function readDocuments(file) {
  const text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  const documents = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let doc;
    try {
      doc = JSON.parse(line);
    } catch (error) {
      throw new UsageError(`${file}:${i + 1}: not JSON: ${error.message}`);
    }
    if (typeof doc?.text !== 'string') throw new UsageError(`${file}:${i + 1}: "text" must be a string`);
    // Same reading as `harag ingest` in Python: metadata values become strings.
    const metadata = Object.fromEntries(
      Object.entries(doc.metadata || {}).map(([key, value]) => [key, String(value)]),
    );
    documents.push({ id: String(doc.id ?? ''), text: doc.text, metadata });
  });
  return documents;
}

function print(opts, reply, render) {
  console.log(opts.json ? JSON.stringify(reply) : render(reply));
}

async function query(client, opts) {
  const reply = await client.query(argument(opts, 'question'), opts);
  print(opts, reply, format.queryReply);
}

async function stream(client, opts) {
  for await (const event of client.streamQuery(argument(opts, 'question'), opts)) {
    if (opts.json) {
      console.log(JSON.stringify(event));
    } else if (event.event === 'sources') {
      console.log(`${format.sourceLines(event.sources.sources).join('\n')}\n`);
    } else if (event.event === 'chunk') {
      process.stdout.write(event.chunk);
    } else if (event.event === 'withdrawn') {
      // Mid-stream failover: the text printed so far is withdrawn; the answer restarts.
      const w = event.withdrawn;
      console.log(
        `\n[answer withdrawn: ${w.upstream} (tier ${w.tier}) failed mid-stream after ` +
          `${w.withdrawnChars} characters: ${w.reason}; restarting with the next tier]`,
      );
    } else if (event.event === 'final') {
      console.log(`\n\n${format.receiptLines(event.final).join('\n')}`);
    }
  }
}

/** Sends the documents in batches and merges the reports as if it had been one call. */
async function ingest(client, opts) {
  const documents = readDocuments(argument(opts, 'file'));
  const total = { results: [], succeeded: 0, failed: 0, elapsedMs: 0, models: [] };
  for (let start = 0; start < documents.length; start += INGEST_BATCH) {
    const batch = documents.slice(start, start + INGEST_BATCH);
    const reply = await client.ingest(batch, { deadlineMs: opts.deadlineMs ?? 120_000 });
    total.results.push(...reply.results.map((r) => ({ ...r, index: r.index + start })));
    total.succeeded += reply.succeeded;
    total.failed += reply.failed;
    total.elapsedMs += reply.elapsedMs;
    total.models = [...new Set([...total.models, ...reply.models])];
  }
  print(opts, total, format.ingestReply);
}

async function health(client, opts) {
  if (opts.args.length) throw new UsageError('health takes no arguments');
  print(opts, await client.getSystemHealth(opts), format.healthReply);
}

const COMMANDS = { query, stream, ingest, health };

async function main(argv) {
  let opts;
  try {
    opts = parse(argv);
    if (opts.help) {
      console.log(USAGE);
      return 0;
    }
    if (!COMMANDS[opts.command]) throw new UsageError(opts.command ? `unknown command "${opts.command}"` : 'no command');
  } catch (error) {
    console.error(`${error.message}\n\n${USAGE}`);
    return 2;
  }
  let client;
  try {
    client = new HaragClient(opts.address, { deadlineMs: opts.deadlineMs, apiKey: opts.apiKey });
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    console.error(error.message); // e.g. an empty or malformed --api-key
    return 2;
  }
  try {
    await COMMANDS[opts.command](client, opts);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    if (!(error instanceof HaragRpcError)) throw error;
    if (opts.json) console.log(JSON.stringify({ error }));
    else console.error(format.rpcError(error));
    return 1;
  } finally {
    client.close();
  }
}

// `harag.js stream ... | head` closes stdout early; that is the reader's choice, not a failure.
process.stdout.on('error', (error) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(0);
});

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
