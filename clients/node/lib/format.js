'use strict';
// Human-readable rendering of gateway replies and errors for the CLI. (--json skips this.)

const STAGE_PREFIX = 'STAGE_';

function seconds(duration) {
  if (!duration) return null;
  return Number(duration.seconds) + duration.nanos / 1e9;
}

function ms(value) {
  return `${Number(value).toFixed(1)} ms`;
}

function sourceLines(sources) {
  if (sources.length === 0) return ['Sources: none'];
  return [
    'Sources:',
    ...sources.map((s) => `  [${s.citation}] ${s.id}  score ${s.score.toFixed(3)}`),
  ];
}

/** The degradation receipt: who served each stage, and every failed attempt on the way. */
function stageLines(stages) {
  const lines = ['Stages:'];
  for (const stage of stages) {
    const name = stage.stage.replace(STAGE_PREFIX, '').padEnd(9);
    const flag = stage.degraded ? '  DEGRADED' : '';
    const detail = stage.detail ? `  (${stage.detail})` : '';
    lines.push(`  ${name} ${stage.servedBy.padEnd(20)} tier ${stage.tier}  ${ms(stage.latencyMs)}${flag}${detail}`);
    for (const attempt of stage.attempts) {
      if (attempt.outcome === 'OK' && stage.attempts.length === 1) continue;
      const kind = [attempt.retry && 'retry', attempt.hedge && 'hedge'].filter(Boolean).join(',');
      const error = attempt.error ? ` - ${attempt.error}` : '';
      lines.push(
        `    #${attempt.attempt} ${attempt.upstream} ${attempt.outcome} ${ms(attempt.latencyMs)}` +
          `${kind ? ` [${kind}]` : ''}${error}`,
      );
    }
  }
  return lines;
}

function receiptLines(reply) {
  const flags = [reply.degraded && 'degraded', reply.cached && 'cached'].filter(Boolean);
  const retry = seconds(reply.retryAfter);
  const lines = [...stageLines(reply.stages)];
  lines.push(
    `request ${reply.requestId}` +
      (reply.traceId ? `  trace ${reply.traceId}` : '') +
      (reply.model ? `  model ${reply.model}` : '') +
      (flags.length ? `  (${flags.join(', ')})` : ''),
  );
  if (retry) lines.push(`retry after ${retry}s`);
  return lines;
}

function queryReply(reply) {
  return [reply.answer, '', ...sourceLines(reply.sources), ...receiptLines(reply)].join('\n');
}

function ingestReply(reply) {
  const lines = [
    `ingested ${reply.results.length} documents: ${reply.succeeded} succeeded, ` +
      `${reply.failed} failed, models ${reply.models.join(', ') || 'none'} (${ms(reply.elapsedMs)})`,
  ];
  for (const result of reply.results) {
    if (result.status === 'INGEST_STATUS_ACCEPTED') continue;
    const missing = result.missing.length ? ` missing: ${result.missing.join(', ')}` : '';
    lines.push(`  #${result.index} ${result.id} ${result.status}: ${result.reason}${missing}`);
  }
  return lines.join('\n');
}

function healthReply(reply) {
  const lines = [
    `${reply.status.replace('SYSTEM_STATUS_', '')}  version ${reply.version}  ` +
      `up ${(seconds(reply.uptime) ?? 0).toFixed(0)}s`,
  ];
  for (const u of reply.upstreams) {
    let breaker = u.breaker ? `breaker ${u.breaker.state.replace('CIRCUIT_STATE_', '')}` : 'no breaker';
    // 64-bit counters arrive as strings (see protos.js).
    if (u.breaker && Number(u.breaker.rejectedCalls)) breaker += ` (${u.breaker.rejectedCalls} rejected)`;
    const last = u.lastOutcome ? `last ${u.lastOutcome} ${ms(u.lastLatencyMs)}` : 'no calls yet';
    const retries = u.retryDecisions.map((d) => `${d.reason}=${d.count}`).join(' ');
    lines.push(
      `  ${u.component.padEnd(9)} ${u.name.padEnd(20)} ${u.address}  tier ${u.tier}  ` +
        `${u.health.replace('UPSTREAM_HEALTH_STATUS_', '')}  ${breaker}  ${last}` +
        (retries ? `  retries: ${retries}` : '') +
        (u.lastError ? `  (${u.lastError})` : ''),
    );
  }
  return lines.join('\n');
}

/** An RPC error with whatever its google.rpc.Status details say. */
function rpcError(error) {
  const lines = [`error: ${error.codeName}: ${error.statusMessage}`];
  for (const violation of error.fieldViolations) {
    lines.push(`  invalid field \`${violation.field}\`: ${violation.description}`);
  }
  for (const detail of error.details) {
    const type = detail['@type'].slice(detail['@type'].lastIndexOf('/') + 1);
    if (type === 'google.rpc.RetryInfo') lines.push(`  retry after ${seconds(detail.retryDelay)}s`);
    if (type === 'google.rpc.ErrorInfo') lines.push(`  reason ${detail.reason} (${detail.domain})`);
  }
  return lines.join('\n');
}

module.exports = { sourceLines, receiptLines, queryReply, ingestReply, healthReply, rpcError };
