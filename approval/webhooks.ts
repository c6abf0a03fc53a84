// Notifications on create: a Slack-compatible incoming-webhook body (`text`, plus
// `blocks` for clients that render them) with the masked operation and the exact
// approve/deny commands. Delivery retries with exponential backoff and never blocks
// or fails the request it announces.

import { createLogger } from '../core/log.js';
import { approvalWebhookDeliveries } from './metrics.js';
import type { ApprovalRequest } from './types.js';

const log = createLogger('approval');

export interface WebhookConfig {
  url: string;
  /** Attempts after the first (default 4). */
  retries?: number;
  /** First backoff; doubles each retry (default 500 ms). */
  backoffMs?: number;
  timeoutMs?: number;
}

export function slackBody(r: ApprovalRequest, serverUrl: string): { text: string; blocks: unknown[] } {
  const who = r.requester.subject ? `${r.requester.subject} (pod ${r.requester.pod.namespace}/${r.requester.pod.name})` : `pod ${r.requester.pod.namespace}/${r.requester.pod.name} (${r.requester.serviceAccountSubject})`;
  const server = serverUrl ? ` --server ${serverUrl}` : '';
  const approve = `agentgate approvals approve ${r.id}${server} --reason "…"`;
  const deny = `agentgate approvals deny ${r.id}${server} --reason "…"`;
  const op = r.operation.replace(/```/g, "'''");
  const lines = [
    `*Approval needed* (${r.rule}) — ${who} on ${r.protocol} ${r.connection}, scope ${r.scope}${r.scope === 'window' ? ` ${r.windowMinutes} min` : ''}, expires ${r.expiresAt}`,
    '```' + op + '```',
    ...(r.justification ? [`Justification: ${r.justification}`] : []),
    `Approve: \`${approve}\``,
    `Deny: \`${deny}\``,
  ];
  return {
    text: lines.join('\n'),
    blocks: [{ type: 'section', text: { type: 'mrkdwn', text: lines.join('\n') } }],
  };
}

export class WebhookNotifier {
  private readonly inflight = new Set<Promise<void>>();
  constructor(private readonly hooks: WebhookConfig[], private readonly serverUrl: string) {}

  /** Starts delivery to every webhook and returns at once. */
  notify(r: ApprovalRequest): void {
    const body = JSON.stringify(slackBody(r, this.serverUrl));
    for (const h of this.hooks) {
      const p = this.deliver(h, body, r.id).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  private async deliver(h: WebhookConfig, body: string, id: string): Promise<void> {
    const attempts = 1 + (h.retries ?? 4);
    let delay = h.backoffMs ?? 500;
    let last = '';
    for (let i = 0; i < attempts; i++) {
      if (i > 0) {
        await new Promise((r) => setTimeout(r, delay).unref());
        delay *= 2;
      }
      try {
        const res = await fetch(h.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(h.timeoutMs ?? 5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          approvalWebhookDeliveries.inc({ outcome: 'delivered' });
          return;
        }
        last = `HTTP ${res.status}`;
        // A 4xx other than 408/429 will not get better by retrying.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    approvalWebhookDeliveries.inc({ outcome: 'failed' });
    log.warn({ webhook: new URL(h.url).host, id, err: last }, 'approval webhook delivery failed');
  }

  /** Resolves when every delivery started so far has finished (shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }
}
