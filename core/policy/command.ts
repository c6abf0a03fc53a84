// `agentgate policy check|explain`: validate a policy file, or show how it decides
// one Kubernetes request or SQL string for one identity.

import { parseFlags, UsageError } from '../cli/command.js';
import type { Command } from '../cli/command.js';
import { formatSourceError } from '../yaml/validate.js';
import type { Identity } from '../identity.js';
import { loadPolicyFile } from './load.js';
import type { CompiledPolicy } from './engine.js';
import { combineDecisions } from './engine.js';
import { explainFunctions, renderExplanation } from './explain.js';
import type { Explained, FunctionFacts } from './explain.js';
import type { PgRequest, PolicyRequest } from './types.js';
import { impersonationRequests, parseKubeRequestLine, readImpersonationHeaders, RequestInfoError } from '../kube/request-info.js';

const USAGE = `Usage:
  agentgate policy check -f FILE [-o text|json]
      Validate a policy: every error as file:line:col: message (exit 1 if invalid),
      warnings for rules that can never take effect, a summary when valid.
  agentgate policy explain -f FILE --subject S [--group G]... [-o text|json]
                           (--kube "METHOD /path?query" [-H "Impersonate-User: U"]...
                            | --sql "SQL" --connection NAME)
      Show the decision for one request: action, winning rule, reason, every matched rule;
      for SQL, every function and operator called and whether (and by which rule) it is open.
      Impersonate-* headers add one impersonate operation per impersonated attribute.

Examples:
  agentgate policy check -f examples/policies/payments.yaml
  agentgate policy explain -f examples/policies/payments.yaml \\
      --subject system:serviceaccount:payments:agent --kube "DELETE /api/v1/namespaces/payments/secrets/keys"
  agentgate policy explain -f examples/policies/payments.yaml \\
      --subject system:serviceaccount:payments:agent --sql "DELETE FROM cards" --connection payments
`;

export const command: Command = {
  name: 'policy',
  summary: 'check a policy file or explain a decision',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'check') return check(rest);
    if (sub === 'explain') return explain(rest);
    if (sub === undefined) throw new UsageError('missing subcommand (check or explain)');
    throw new UsageError(`unknown subcommand '${sub}' (expected check or explain)`);
  },
};

function output(v: string | undefined): 'text' | 'json' {
  if (v === undefined || v === 'text' || v === 'json') return v ?? 'text';
  throw new UsageError(`-o must be text or json, got '${v}'`);
}

async function check(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { file: { type: 'string', short: 'f' }, output: { type: 'string', short: 'o' } }, { positionals: { max: 0 } });
  if (!values.file) throw new UsageError('missing -f FILE');
  const format = output(values.output);
  const result = loadPolicyFile(values.file);
  if (format === 'json') {
    const p = result.policy;
    process.stdout.write(
      `${JSON.stringify({
        valid: !!p,
        errors: result.errors,
        warnings: result.warnings,
        ...(p && { policy: p.name, rules: p.rules.filter((r) => r.tier === 'user').length, builtins: p.rules.filter((r) => r.tier !== 'user').map((r) => r.name), default: p.defaultAction, enforcement: p.enforcement, masking: p.masking }),
      })}\n`,
    );
    return p ? 0 : 1;
  }
  for (const e of result.errors) process.stderr.write(`${formatSourceError(e)}\n`);
  for (const w of result.warnings) process.stderr.write(`${formatSourceError({ ...w, message: `warning: ${w.message}` })}\n`);
  const p = result.policy;
  if (!p) {
    process.stderr.write(`${values.file}: invalid policy (${result.errors.length} error${result.errors.length === 1 ? '' : 's'})\n`);
    return 1;
  }
  const own = p.rules.filter((r) => r.tier === 'user');
  const count = (a: string) => own.filter((r) => r.action === a).length;
  const builtins = p.rules.filter((r) => r.tier !== 'user').map((r) => r.name);
  process.stdout.write(
    [
      `${values.file}: policy '${p.name}' is valid`,
      `  rules:       ${own.length} (${count('allow')} allow, ${count('approve')} approve, ${count('deny')} deny)`,
      `  built-ins:   ${builtins.length ? builtins.join(', ') : '(all replaced)'}`,
      `  default:     ${p.defaultAction}`,
      `  enforcement: ${p.enforcement}${p.enforcement === 'observe' ? ' (decisions are recorded, not enforced)' : ''}`,
      `  masking:     pan ${p.masking.pan}, secrets ${p.masking.secrets}, ${p.masking.fields.length} extra field(s), ${p.masking.columns.length} column(s)`,
      `  warnings:    ${result.warnings.length}`,
      '',
    ].join('\n'),
  );
  return 0;
}

async function explain(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      file: { type: 'string', short: 'f' },
      subject: { type: 'string' },
      group: { type: 'string', multiple: true },
      kube: { type: 'string' },
      sql: { type: 'string' },
      connection: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true },
      output: { type: 'string', short: 'o' },
    },
    { positionals: { max: 0 } },
  );
  if (!values.file) throw new UsageError('missing -f FILE');
  if (!values.subject) throw new UsageError('missing --subject');
  if ((values.kube === undefined) === (values.sql === undefined)) throw new UsageError('give exactly one of --kube "METHOD /path" or --sql "SQL"');
  if (values.sql !== undefined && !values.connection) throw new UsageError('--sql needs --connection NAME');
  if (values.kube !== undefined && values.connection) throw new UsageError('--connection applies only to --sql');
  if (values.header && values.kube === undefined) throw new UsageError('--header applies only to --kube');
  const headers: Record<string, string[]> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header must be "Name: value", got '${h}'`);
    (headers[h.slice(0, colon).trim().toLowerCase()] ??= []).push(h.slice(colon + 1).trim());
  }
  const format = output(values.output);

  const loaded = loadPolicyFile(values.file);
  if (!loaded.policy) {
    for (const e of loaded.errors) process.stderr.write(`${formatSourceError(e)}\n`);
    process.stderr.write(`${values.file}: invalid policy, nothing to explain (see agentgate policy check)\n`);
    return 1;
  }
  const policy: CompiledPolicy = loaded.policy;
  const identity: Identity = { subject: values.subject, groups: values.group ?? [], via: 'trust' };

  let requests: PolicyRequest[];
  let facts: ((name: string) => FunctionFacts) | undefined;
  if (values.kube !== undefined) {
    try {
      requests = [parseKubeRequestLine(values.kube)];
      // Impersonation is decided like the API server authorizes it: one request per attribute.
      const imp = readImpersonationHeaders(headers);
      if (imp) requests.push(...impersonationRequests(imp));
    } catch (err) {
      if (err instanceof RequestInfoError) {
        process.stderr.write(`agentgate policy explain: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
  } else {
    const classified = await classifySql(values.sql!, values.connection!);
    if ('error' in classified) {
      process.stderr.write(`agentgate policy explain: ${classified.error}\n`);
      return 1;
    }
    requests = classified.requests;
    facts = classified.facts;
  }
  const items: Explained[] = requests.map((request) => {
    const item: Explained = { request, decision: policy.decide(identity, request) };
    if (facts && request.protocol === 'postgres' && (request.functions.length || request.unlisted?.length)) item.functions = explainFunctions(policy, identity, request, facts);
    return item;
  });
  const overall = combineDecisions(items.map((i) => i.decision));
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify({ policy: policy.name, subject: identity.subject, groups: identity.groups, decision: overall, operations: items })}\n`);
  } else {
    process.stdout.write(renderExplanation(policy, identity, items, overall));
  }
  return 0;
}

type SqlResult = { requests: PgRequest[]; facts: (name: string) => FunctionFacts } | { error: string };

/** Classifies with the PostgreSQL proxy's own classifier, loaded only when --sql asks for it (its WASM parser is large). */
async function classifySql(sql: string, connection: string): Promise<SqlResult> {
  const { classifySql: classify, loadSqlParser, reportedFunctionClass, FUNCTION_CLASS_REASONS, needsRule, needsExactRule } = await import('../sql/index.js');
  await loadSqlParser();
  const c = classify(sql, connection);
  if (!c.ok) {
    return { error: `SQL is refused before any rule applies (SQLSTATE ${c.sqlstate}): ${c.message}${c.position !== undefined ? ` at character ${c.position}` : ''}` };
  }
  if (c.operations.length === 0) return { error: 'the SQL holds no statement (only whitespace or comments): nothing to decide' };
  const facts = (name: string): FunctionFacts => {
    const cls = reportedFunctionClass(name);
    return { class: cls, reason: FUNCTION_CLASS_REASONS[cls], needsRule: needsRule(cls), exactOnly: needsExactRule(cls) };
  };
  return { requests: [...c.operations], facts };
}
