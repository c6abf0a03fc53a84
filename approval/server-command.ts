// `agentgate approval --config FILE`: runs the approval service until SIGTERM/SIGINT.

import type { Command } from '../core/cli/command.js';
import { parseFlags, UsageError } from '../core/cli/command.js';
import { createLogger } from '../core/log.js';
import { ConfigError, loadApprovalConfig } from './config.js';
import { startApprovalServer } from './server.js';

const USAGE = `Usage: agentgate approval --config FILE [--listen HOST:PORT] [--metrics HOST:PORT]

Runs the approval service: sidecars create approval requests for operations a
policy rule marks \`action: approve\`; approvers (OIDC) list, approve and deny them
with \`agentgate approvals\`. API on 8080 (OpenAPI at /openapi.json, /healthz,
/readyz), Prometheus metrics on 9090.

Flags:
  --config FILE         service configuration (YAML); see the README
  --listen HOST:PORT    overrides \`listen\` (default 0.0.0.0:8080)
  --metrics HOST:PORT   overrides \`metrics\` (default 0.0.0.0:9090)
`;

export const command: Command = {
  name: 'approval',
  summary: 'run the approval service',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { config: { type: 'string' }, listen: { type: 'string' }, metrics: { type: 'string' } });
    if (!values.config) throw new UsageError('--config FILE is required');
    const log = createLogger('approval');
    let cfg;
    try {
      cfg = loadApprovalConfig(values.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`agentgate approval: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
    const hp = (v: string, flag: string) => {
      const i = v.lastIndexOf(':');
      const port = Number(v.slice(i + 1));
      if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${flag} must be HOST:PORT`);
      return { host: v.slice(0, i).replace(/^\[|\]$/g, ''), port };
    };
    if (values.listen) cfg.listen = hp(values.listen, '--listen');
    if (values.metrics) cfg.metrics = hp(values.metrics, '--metrics');
    let srv;
    try {
      srv = await startApprovalServer(cfg);
    } catch (err) {
      process.stderr.write(`agentgate approval: cannot start: ${(err as Error).message}\n`);
      return 1;
    }
    log.info({ url: srv.url, store: srv.store.kind, metricsPort: srv.metricsPort }, 'approval service listening');
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    log.info('approval service stopping');
    await srv.close();
    return 0;
  },
};
