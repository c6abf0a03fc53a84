// `agentgate sidecar --config FILE`: the proxy that runs beside an agent.
import type { Command } from '../core/cli/command.js';
import { parseFlags, UsageError } from '../core/cli/command.js';
import { createLogger } from '../core/log.js';
import { loadPolicyFile } from '../core/policy/load.js';
import { formatSourceError } from '../core/yaml/validate.js';
import { ConfigError, loadSidecarConfig } from './config.js';
import { startSidecar } from './run.js';

const usage = `Usage: agentgate sidecar --config FILE

Runs the sidecar: PostgreSQL proxies (one loopback port per connection), the
Kubernetes API proxy, health (/healthz/live, /healthz/ready) and metrics (/metrics).
SIGTERM drains: no new connections, open ones finish their statement, then close.

Options:
  -c, --config FILE   sidecar configuration (YAML)
      --check         validate the configuration and its policy file, and exit
  -h, --help          show this help`;

export const command: Command = {
  name: 'sidecar',
  summary: 'run the sidecar proxy (PostgreSQL and Kubernetes API) beside an agent',
  usage,
  async run(argv) {
    const { values } = parseFlags(argv, {
      config: { type: 'string', short: 'c' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    if (!values.config) throw new UsageError('missing --config FILE');
    let config;
    try {
      config = loadSidecarConfig(values.config);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        return 1;
      }
      throw err;
    }
    if (values.check) {
      // The policy is part of what the sidecar would run with: an invalid one would start
      // unready and refuse every statement, so a check that passed would be a false promise.
      const loaded = loadPolicyFile(config.policy.file);
      if (loaded.errors.length) {
        process.stderr.write(loaded.errors.map(formatSourceError).join('\n') + '\n');
        return 1;
      }
      for (const w of loaded.warnings) process.stderr.write(`warning: ${formatSourceError(w)}\n`);
      process.stdout.write(`${values.config}: ok (${config.postgres.length} postgres connection(s)${config.kubernetes ? ', kubernetes' : ''})\n`);
      return 0;
    }
    const log = createLogger('sidecar');
    let sidecar;
    try {
      sidecar = await startSidecar(config, { log });
    } catch (err) {
      process.stderr.write(`agentgate sidecar: ${(err as Error).message}\n`);
      return 1;
    }
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        sidecar.stop().then(
          () => resolve(0),
          (err: Error) => {
            log.error({ err: err.message }, 'shutdown failed');
            resolve(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
