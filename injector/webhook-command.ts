// `agentgate injector`: the mutating admission webhook.

import type { Command } from '../core/cli/command.js';
import { parseFlags, UsageError } from '../core/cli/command.js';
import { createLogger } from '../core/log.js';
import { enableDefaultMetrics, startMetricsServer } from '../core/metrics.js';
import { ConfigError, DEFAULT_CONFIG, loadInjectorConfig } from './config.js';
import { startWebhookServer } from './webhook-server.js';

const USAGE = `Usage: agentgate injector --tls-cert FILE --tls-key FILE [--config FILE] [--listen [HOST]:PORT] [--metrics [HOST]:PORT]

Runs the mutating admission webhook that injects the agentgate proxy into agent pods.

  --config FILE        injector config (YAML); built-in defaults when absent
  --tls-cert FILE      serving certificate (PEM), reloaded when the file changes
  --tls-key FILE       its private key (PEM), reloaded with it
  --listen ADDR        HTTPS address of /mutate, /healthz, /readyz (default :8443)
  --metrics ADDR       Prometheus /metrics address (default :9090; "off" to disable)
`;

/** `:8443` → all interfaces; `127.0.0.1:8443`; `[::1]:8443`. */
export function parseAddress(flag: string, value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--${flag}: expected [HOST]:PORT, got '${value}'`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export const command: Command = {
  name: 'injector',
  summary: 'run the mutating admission webhook',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      config: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      listen: { type: 'string', default: ':8443' },
      metrics: { type: 'string', default: ':9090' },
    });
    if (!values['tls-cert']) throw new UsageError('missing --tls-cert');
    if (!values['tls-key']) throw new UsageError('missing --tls-key');
    const listen = parseAddress('listen', values.listen!);
    const metrics = values.metrics === 'off' ? undefined : parseAddress('metrics', values.metrics!);
    const log = createLogger('injector');

    let config = DEFAULT_CONFIG;
    if (values.config) {
      try {
        config = await loadInjectorConfig(values.config);
      } catch (err) {
        process.stderr.write(`agentgate injector: ${err instanceof ConfigError ? `invalid config:\n${err.message}` : (err as Error).message}\n`);
        return 1;
      }
    }
    let webhook;
    try {
      webhook = await startWebhookServer({ config, certFile: values['tls-cert'], keyFile: values['tls-key'], host: listen.host, port: listen.port, log });
    } catch (err) {
      process.stderr.write(`agentgate injector: ${(err as Error).message}\n`);
      return 1;
    }
    let metricsServer: import('node:http').Server | undefined;
    if (metrics) {
      enableDefaultMetrics();
      try {
        metricsServer = await startMetricsServer(metrics.host, metrics.port);
      } catch (err) {
        await webhook.close();
        process.stderr.write(`agentgate injector: metrics on ${values.metrics}: ${(err as Error).message}\n`);
        return 1;
      }
    }
    log.info({ listen: values.listen, metrics: values.metrics, native: config.nativeSidecars, image: config.image }, 'injector listening');
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    log.info('injector stopping');
    await Promise.all([webhook.close(), new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()))]);
    return 0;
  },
};
