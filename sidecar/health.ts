// The kubelet's probes: `/healthz/live` answers while the process serves HTTP;
// `/healthz/ready` only while every listener is up and a policy is loaded (and not
// while draining), with the reasons in the body when it is not.

import http from 'node:http';

export interface ReadinessCheck {
  /** Empty when ready; else one line per reason. */
  (): string[];
}

export function startHealthServer(host: string, port: number, notReady: ReadinessCheck): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = req.url?.split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' });
      res.end('method not allowed\n');
      return;
    }
    if (path === '/healthz/live') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (path === '/healthz/ready') {
      const reasons = notReady();
      res.writeHead(reasons.length ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(reasons.length ? reasons.map((r) => `not ready: ${r}\n`).join('') : 'ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: probes are /healthz/live and /healthz/ready\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
