// The webhook's HTTPS server: `/mutate` for the API server, `/healthz` and
// `/readyz` for the kubelet. Requests are answered from memory (the mutation is
// pure), so latency is JSON parsing, the mutation and the patch.

import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { InjectorConfig } from './config.js';
import { reviewAdmission } from './admission.js';
import type { AdmissionAnswer } from './admission.js';
import { CertificateReloader } from './tls-reloader.js';
import type { CertificatePair } from './tls-reloader.js';
import { counter, gauge, histogram, LATENCY_BUCKETS } from '../core/metrics.js';
import type { Logger } from '../core/log.js';

/** The API server's objects are bounded by etcd's request limit (1.5 MiB); leave room for the envelope. */
const MAX_BODY = 4 * 1024 * 1024;

const admissions = counter({
  name: 'agentgate_injector_admissions_total',
  help: 'Admission reviews answered, by result (injected, unchanged, skipped, refused, ignored, invalid).',
  labelNames: ['result'] as const,
});
const latency = histogram({
  name: 'agentgate_injector_admission_duration_seconds',
  help: 'Time from the end of the request body to the answer being written.',
  buckets: LATENCY_BUCKETS,
});
const certExpiry = gauge({
  name: 'agentgate_injector_certificate_expiry_timestamp_seconds',
  help: 'notAfter of the serving certificate currently in use (Unix time).',
});
const certReloads = counter({
  name: 'agentgate_injector_certificate_reloads_total',
  help: 'Serving certificate reloads, by result (success, failure).',
  labelNames: ['result'] as const,
});

export interface WebhookServerOptions {
  config: InjectorConfig;
  certFile: string;
  keyFile: string;
  host: string;
  port: number;
  log: Logger;
  /** How often the certificate files are checked for changes. */
  reloadIntervalMs?: number;
  /** Version written into the status annotation (tests pin it). */
  version?: string;
}

export interface WebhookServer {
  server: https.Server;
  port: number;
  /** The certificate currently served. */
  certificate(): CertificatePair;
  /** Checks the certificate files now (the timer does it periodically). */
  reloadNow(): Promise<void>;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendAnswer(res: http.ServerResponse, a: AdmissionAnswer): void {
  send(res, a.httpStatus, JSON.stringify(a.review));
}

/** A review answer for requests that never reached `reviewAdmission` (wrong method, too large). */
function refusal(status: number, message: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: '', allowed: false, status: { status: 'Failure', code: status, reason: 'BadRequest', message } },
  });
}

export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const { log } = opts;
  let current: CertificatePair;
  let server: https.Server | undefined;
  const reloader = new CertificateReloader({
    certFile: opts.certFile,
    keyFile: opts.keyFile,
    intervalMs: opts.reloadIntervalMs,
    log,
    onReload(pair) {
      server?.setSecureContext({ cert: pair.cert, key: pair.key });
      current = pair;
      certExpiry.set(pair.notAfter.getTime() / 1000);
      certReloads.inc({ result: 'success' });
      log.info({ notAfter: pair.notAfter.toISOString(), fingerprint: pair.fingerprint }, 'serving certificate reloaded');
    },
    onError(err) {
      certReloads.inc({ result: 'failure' });
      log.warn({ err: err.message }, 'serving certificate not reloaded; keeping the previous one');
    },
  });
  current = await reloader.start();
  certExpiry.set(current.notAfter.getTime() / 1000);

  server = https.createServer({ cert: current.cert, key: current.key, minVersion: 'TLSv1.2', keepAlive: true }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return send(res, 200, 'ok\n', 'text/plain');
    if (path === '/readyz') {
      // Not ready with an expired certificate: the API server could not call us anyway.
      const ok = current.notAfter.getTime() > Date.now();
      return send(res, ok ? 200 : 503, ok ? 'ok\n' : 'serving certificate expired\n', 'text/plain');
    }
    if (path !== '/mutate') return send(res, 404, refusal(404, `agentgate injector: no endpoint ${path} (the webhook is at /mutate)`));
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return send(res, 405, refusal(405, `agentgate injector: /mutate takes POST, not ${req.method}`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on('data', (c: Buffer) => {
      if (aborted) return;
      size += c.length;
      if (size > MAX_BODY) {
        aborted = true;
        admissions.inc({ result: 'invalid' });
        res.setHeader('connection', 'close');
        send(res, 413, refusal(413, `agentgate injector: request body over ${MAX_BODY} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (aborted) return;
      const t0 = process.hrtime.bigint();
      let a: AdmissionAnswer;
      try {
        a = reviewAdmission(Buffer.concat(chunks), opts.config, { version: opts.version });
      } catch (err) {
        // reviewAdmission answers everything itself; this is the last line of defence.
        log.error({ err: (err as Error).message }, 'admission review failed');
        admissions.inc({ result: 'invalid' });
        return send(res, 500, refusal(500, 'agentgate injector: internal error while reviewing the request'));
      }
      sendAnswer(res, a);
      latency.observe(Number(process.hrtime.bigint() - t0) / 1e9);
      admissions.inc({ result: a.result });
      if (a.result === 'refused' || a.result === 'invalid') {
        log.warn({ uid: a.review.response.uid, result: a.result, reason: a.reason }, 'admission refused');
      } else {
        log.debug({ uid: a.review.response.uid, result: a.result, reason: a.reason }, 'admission');
      }
    });
  });
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  server.on('clientError', (_err, socket) => socket.destroy());
  // The API server keeps connections to webhooks open; match its idle timeout.
  server.keepAliveTimeout = 90_000;
  server.headersTimeout = 95_000;

  const s = server;
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(opts.port, opts.host, () => {
      s.off('error', reject);
      resolve();
    });
  });
  return {
    server: s,
    port: (s.address() as AddressInfo).port,
    certificate: () => current,
    reloadNow: () => reloader.check(),
    close: () =>
      new Promise<void>((resolve) => {
        reloader.stop();
        s.close(() => resolve());
        s.closeAllConnections();
      }),
  };
}
