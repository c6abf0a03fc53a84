// `agentgate approvals list|show|approve|deny`: the approvers' CLI against the
// approval service's API, authenticated with the approver's OIDC token.

import { readFileSync } from 'node:fs';
import type { Command } from '../core/cli/command.js';
import { parseFlags, UsageError } from '../core/cli/command.js';
import type { ApprovalRequest } from './types.js';
import { APPROVAL_STATES } from './types.js';

const USAGE = `Usage:
  agentgate approvals list [--state STATE] [-o table|json]
  agentgate approvals show ID [-o table|json]
  agentgate approvals approve ID [--reason R] [-o table|json]
  agentgate approvals deny ID --reason R [-o table|json]

Flags (every subcommand):
  --server URL        approval service (default $AGENTGATE_APPROVAL_SERVER, else http://127.0.0.1:8080)
  --token-file FILE   file holding your OIDC token (default $AGENTGATE_TOKEN_FILE); the token's
                      groups decide which requests you may decide
  -o, --output FMT    table (default, for people) or json (for scripts)
  --state STATE       list only: ${APPROVAL_STATES.join(', ')}
  --reason R          why; required to deny (and to approve when the service says so)

Exit status: 0 done, 1 the service refused or could not be reached, 2 bad usage.
`;

const FLAGS = {
  server: { type: 'string' },
  'token-file': { type: 'string' },
  output: { type: 'string', short: 'o' },
  state: { type: 'string' },
  reason: { type: 'string' },
} as const;

class ApiFailure extends Error {}

export const command: Command = {
  name: 'approvals',
  summary: 'list, show, approve and deny approval requests',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, FLAGS, { positionals: { min: 1, max: 2, name: 'subcommand (list, show, approve or deny)' } });
    const [sub, id] = positionals;
    const output = values.output ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, not '${output}'`);
    if (!['list', 'show', 'approve', 'deny'].includes(sub)) throw new UsageError(`unknown subcommand '${sub}' (list, show, approve or deny)`);
    if (sub === 'list' && id !== undefined) throw new UsageError(`unexpected argument '${id}'`);
    if (sub !== 'list' && !id) throw new UsageError(`${sub} needs an approval ID`);
    if (values.state !== undefined && (sub !== 'list' || !APPROVAL_STATES.includes(values.state as never))) {
      throw new UsageError(sub !== 'list' ? '--state applies to list only' : `--state must be one of ${APPROVAL_STATES.join(', ')}`);
    }
    if (values.reason !== undefined && sub !== 'approve' && sub !== 'deny') throw new UsageError('--reason applies to approve and deny only');
    if (sub === 'deny' && !values.reason?.trim()) throw new UsageError('deny needs --reason R');
    const server = (values.server ?? process.env.AGENTGATE_APPROVAL_SERVER ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    const tokenFile = values['token-file'] ?? process.env.AGENTGATE_TOKEN_FILE;
    if (!tokenFile) throw new UsageError('--token-file FILE is required (or set AGENTGATE_TOKEN_FILE)');
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      process.stderr.write(`agentgate approvals: cannot read token file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 1;
    }
    try {
      if (sub === 'list') {
        const q = values.state ? `?state=${values.state}` : '';
        const body = (await api(server, token, 'GET', `/v1/approvals${q}`)) as { items: ApprovalRequest[] };
        process.stdout.write(output === 'json' ? `${JSON.stringify(body.items, null, 2)}\n` : table(body.items));
        return 0;
      }
      const path = `/v1/approvals/${encodeURIComponent(id)}`;
      const r = (sub === 'show'
        ? await api(server, token, 'GET', path)
        : await api(server, token, 'POST', `${path}/${sub}`, values.reason !== undefined ? { reason: values.reason } : {})) as ApprovalRequest;
      process.stdout.write(output === 'json' ? `${JSON.stringify(r, null, 2)}\n` : details(r));
      return 0;
    } catch (err) {
      if (err instanceof ApiFailure) {
        process.stderr.write(`agentgate approvals: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
  },
};

async function api(server: string, token: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${server}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    throw new ApiFailure(`cannot reach the approval service at ${server}: ${e.cause?.code ?? e.message}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ApiFailure(`${server} answered HTTP ${res.status} with something that is not JSON (is --server the approval service?)`);
  }
  if (!res.ok) {
    const e = json as { code?: string; message?: string };
    throw new ApiFailure(`${e.code ?? `HTTP ${res.status}`}: ${e.message ?? 'request failed'}`);
  }
  return json;
}

function requester(r: ApprovalRequest): string {
  const pod = `${r.requester.pod.namespace}/${r.requester.pod.name}`;
  return r.requester.subject ? `${r.requester.subject} (${pod})` : pod;
}

function oneLine(s: string, max: number): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
}

function table(items: ApprovalRequest[]): string {
  if (items.length === 0) return 'No approval requests.\n';
  const rows = [['ID', 'STATE', 'AGE', 'REQUESTER', 'CONNECTION', 'RULE', 'SCOPE', 'OPERATION']];
  for (const r of items) {
    rows.push([r.id, r.state, age(r.createdAt), requester(r), `${r.protocol}/${r.connection}`, r.rule, r.scope, oneLine(r.operation, 60)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

function details(r: ApprovalRequest): string {
  const lines: [string, string][] = [
    ['ID', r.id],
    ['State', r.state],
    ['Requester', `${requester(r)}, service account ${r.requester.serviceAccountSubject}, pod uid ${r.requester.pod.uid}`],
    ['Connection', `${r.protocol}/${r.connection}`],
    ['Rule', r.rule],
    ['Scope', r.scope === 'window' ? `window (${r.windowMinutes} min)` : 'once'],
    ['Mode', r.mode],
    ['Approvals', `${r.decisions.filter((d) => d.verdict === 'approve').length} of ${r.minApprovals}${r.approverGroups.length ? ` from ${r.approverGroups.join(', ')}` : ''}`],
    ['Created', r.createdAt],
    ['Expires', r.expiresAt],
  ];
  if (r.justification) lines.push(['Justification', r.justification]);
  if (r.decidedAt) lines.push(['Decided', r.decidedAt]);
  if (r.validUntil) lines.push(['Valid until', r.validUntil]);
  if (r.usedAt) lines.push(['Used', `${r.usedAt} (${r.uses}x)`]);
  const w = 'Justification:'.length; // fixed, so scripts reading the table see stable columns
  let out = lines.map(([k, v]) => `${`${k}:`.padEnd(w)} ${v}`).join('\n') + '\n';
  out += `Operation:\n${r.operation.split('\n').map((l) => `  ${l}`).join('\n')}\n`;
  if (r.decisions.length) {
    out += 'Decisions:\n' + r.decisions.map((d) => `  ${d.at}  ${d.verdict.padEnd(7)}  ${d.approver}${d.reason ? `: ${d.reason}` : ''}`).join('\n') + '\n';
  }
  return out;
}
