// TEST DOUBLE of the Kubernetes API server — not a real kube-apiserver.
//
// It serves, over HTTPS with bearer-token authentication, exactly the endpoints the
// Kubernetes-proxy tests and benchmarks use, following the real server's behaviour:
// - discovery: /version, /api (APIVersions), /apis (APIGroupList, empty: only the core
//   group exists here), /api/v1 (APIResourceList with pods, pods/log, pods/exec,
//   pods/attach, secrets, configmaps, namespaces); aggregated discovery is not offered,
//   so clients fall back to these legacy documents as they do against older servers;
//   /openapi/* answers 404 like a server with OpenAPI disabled;
// - get/list/create/update/merge-patch/delete of pods, secrets, configmaps (namespaced)
//   and namespaces (cluster-scoped), with a single global resourceVersion;
// - list chunking with `limit`/`continue` (metadata.continue, remainingItemCount) and
//   `fieldSelector=metadata.name=X`; list items without kind/apiVersion (only the list
//   carries them, as the real server encodes a list); Table output (`Accept:
//   …;as=Table;g=meta.k8s.io`) with Name/Age columns and rows whose object follows
//   `includeObject` (PartialObjectMetadata by default, the whole object for `Object`);
// - watch (`watch=1`) from a resourceVersion (history kept for the whole run), or from
//   now with synthetic ADDED events when none is given, newline-delimited JSON events,
//   `timeoutSeconds`; 410 Gone `Expired` for a resourceVersion older than the history;
// - pods/log as text/plain, with `follow=true` streaming lines appended later;
// - pods/exec and pods/attach over WebSocket with the v5.channel.k8s.io / v4.channel.k8s.io
//   framing (channel byte + payload; 0 stdin, 1 stdout, 2 stderr, 3 status as a JSON
//   Status, 4 resize, 255 close in v5). Commands it "runs": `echo ARGS…`, `cat`
//   (stdin → stdout until stdin closes), `false` (exit 1); and the same over SPDY/3.1
//   (`Upgrade: SPDY/3.1`, X-Stream-Protocol-Version v4.channel.k8s.io, one SPDY stream per
//   channel named by its `streamtype` header), as kubectl ≤ 1.30 uses it.
// - errors as real `Status` objects (NotFound, AlreadyExists, Unauthorized, Gone, …).
// Not implemented (never used by the tests): protobuf, label selectors, strategic
// merge patch semantics beyond a JSON merge patch, admission, RBAC.
// Faults for tests: down()/up() (the listener stops accepting, then comes back on the
// same port), slowMs (delay before every response), and `requests` records what came in.

import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';
import { createServingIdentity } from '../../sidecar/kubernetes/tls-identity.js';
import { CONTROL, FLAG_FIN, FrameReader, HeaderDeflater, HeaderInflater, controlFrame, dataFrame, headerBlockOf } from '../../sidecar/kubernetes/spdy.js';
import type { Frame } from '../../sidecar/kubernetes/spdy.js';

type Obj = Record<string, any>;

interface ResourceDef {
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
}

const RESOURCES: Record<string, ResourceDef> = {
  pods: { kind: 'Pod', namespaced: true, shortNames: ['po'] },
  secrets: { kind: 'Secret', namespaced: true },
  configmaps: { kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] },
  namespaces: { kind: 'Namespace', namespaced: false, shortNames: ['ns'] },
};
const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

interface StoredEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: string;
  object: Obj;
}

interface Watcher {
  resource: string;
  namespace: string;
  name?: string;
  send(ev: StoredEvent): void;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export interface KubeApiDoubleOptions {
  token?: string;
  host?: string;
}

function statusObj(code: number, reason: string, message: string, details?: Obj): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

export class KubeApiDouble {
  readonly caPem: string;
  token: string;
  port = 0;
  readonly host: string;
  /** Added before every response (fault injection). */
  slowMs = 0;
  readonly requests: RecordedRequest[] = [];
  /** Fault hook: when it returns true it has answered the request itself. */
  override: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  /** Exec sessions the double ran: command and what arrived on stdin. */
  readonly execs: { command: string[]; protocol: string; stdin: string }[] = [];

  private server: https.Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (p) => ['v5.channel.k8s.io', 'v4.channel.k8s.io'].find((x) => p.has(x)) ?? false });
  private readonly sockets = new Set<Socket>();
  private readonly store = new Map<string, Obj>();
  private readonly history: StoredEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly logs = new Map<string, { lines: string[]; followers: Set<ServerResponse> }>();
  private rv = 100;
  private readonly cert: { key: string; cert: string };

  private constructor(opts: KubeApiDoubleOptions) {
    const id = createServingIdentity({ commonName: 'kube-apiserver-double' });
    this.caPem = id.caPem;
    this.cert = { key: id.keyPem, cert: id.certPem };
    this.token = opts.token ?? `double-${randomUUID()}`;
    this.host = opts.host ?? '127.0.0.1';
    this.server = this.createServer();
  }

  static async start(opts: KubeApiDoubleOptions = {}): Promise<KubeApiDouble> {
    const d = new KubeApiDouble(opts);
    await d.listen(0);
    d.put('namespaces', { metadata: { name: 'default' } });
    return d;
  }

  get url(): string {
    return `https://${this.host}:${this.port}`;
  }

  private createServer(): https.Server {
    const server = https.createServer({ key: this.cert.key, cert: this.cert.cert }, (req, res) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      if (this.override?.(req, res)) return;
      const go = () => this.handle(req, res).catch((err: Error) => this.send(res, 500, statusObj(500, 'InternalError', err.message)));
      if (this.slowMs > 0) setTimeout(go, this.slowMs);
      else go();
    });
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      this.upgrade(req, socket, head);
    });
    return server;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, this.host, () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  /** Fault: stop accepting and drop every open connection (clients see ECONNREFUSED). */
  async down(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  /** Undo down(): listen again on the same port. */
  async up(): Promise<void> {
    this.server = this.createServer();
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    for (const w of this.logs.values()) for (const f of w.followers) f.end();
    await this.down();
  }

  /** Open watches right now (to check that a dropped client ends the upstream watch). */
  get openWatches(): number {
    return this.watchers.size;
  }

  // ---- store -------------------------------------------------------------

  private key(resource: string, namespace: string, name: string): string {
    return `${resource}/${namespace}/${name}`;
  }

  private nextRv(): number {
    return ++this.rv;
  }

  /** Creates or replaces an object (test setup and the API's create/update). */
  put(resource: string, obj: Obj): Obj {
    const def = RESOURCES[resource];
    if (!def) throw new Error(`double: unknown resource ${resource}`);
    const ns = def.namespaced ? (obj.metadata?.namespace ?? 'default') : '';
    const k = this.key(resource, ns, obj.metadata.name);
    const prev = this.store.get(k);
    const rv = this.nextRv();
    const { kind: _kind, apiVersion: _apiVersion, ...fields } = obj;
    // kind and apiVersion first, as the API server encodes them.
    const o: Obj = {
      kind: def.kind,
      apiVersion: 'v1',
      ...fields,
      metadata: {
        ...obj.metadata,
        ...(def.namespaced ? { namespace: ns } : {}),
        uid: prev?.metadata.uid ?? randomUUID(),
        resourceVersion: String(rv),
        creationTimestamp: prev?.metadata.creationTimestamp ?? new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    if (resource === 'pods') {
      o.spec ??= { containers: [{ name: 'main', image: 'busybox' }] };
      o.status ??= { phase: 'Running', containerStatuses: [{ name: 'main', ready: true, restartCount: 0, image: 'busybox', imageID: '', state: { running: {} } }] };
    }
    if (resource === 'namespaces') o.status ??= { phase: 'Active' };
    this.store.set(k, o);
    this.emit({ rv, type: prev ? 'MODIFIED' : 'ADDED', resource, object: o });
    return o;
  }

  remove(resource: string, namespace: string, name: string): Obj | undefined {
    const k = this.key(resource, RESOURCES[resource]!.namespaced ? namespace : '', name);
    const prev = this.store.get(k);
    if (!prev) return undefined;
    this.store.delete(k);
    const rv = this.nextRv();
    const gone = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(rv) } };
    this.emit({ rv, type: 'DELETED', resource, object: gone });
    return gone;
  }

  get(resource: string, namespace: string, name: string): Obj | undefined {
    return this.store.get(this.key(resource, RESOURCES[resource]?.namespaced ? namespace : '', name));
  }

  /** Appends a line to a pod's log (followers get it at once). */
  appendLog(namespace: string, pod: string, line: string): void {
    const l = this.logOf(namespace, pod);
    l.lines.push(line);
    for (const f of l.followers) f.write(`${line}\n`);
  }

  private logOf(namespace: string, pod: string) {
    const k = `${namespace}/${pod}`;
    let l = this.logs.get(k);
    if (!l) this.logs.set(k, (l = { lines: [], followers: new Set() }));
    return l;
  }

  private emit(ev: StoredEvent): void {
    this.history.push(ev);
    for (const w of this.watchers) {
      if (w.resource !== ev.resource) continue;
      if (w.namespace && ev.object.metadata.namespace !== w.namespace) continue;
      if (w.name && ev.object.metadata.name !== w.name) continue;
      w.send(ev);
    }
  }

  private list(resource: string, namespace: string): Obj[] {
    const out: Obj[] = [];
    for (const [k, o] of this.store) {
      if (!k.startsWith(`${resource}/`)) continue;
      if (namespace && o.metadata.namespace !== namespace) continue;
      out.push(o);
    }
    return out.sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
  }

  // ---- HTTP --------------------------------------------------------------

  private send(res: ServerResponse, code: number, body: Obj): void {
    if (res.headersSent) return void res.destroy();
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'audit-id': randomUUID(), 'cache-control': 'no-cache, private', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  private async readJson(req: IncomingMessage): Promise<Obj> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.authorized(req)) return this.send(res, 401, statusObj(401, 'Unauthorized', 'Unauthorized'));
    const url = new URL(req.url ?? '/', 'https://double');
    const p = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (method === 'GET') {
      if (p === '/version') return this.send(res, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0-double', gitCommit: '', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.24', compiler: 'gc', platform: 'linux/amd64' });
      if (p === '/api') return this.send(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `${this.host}:${this.port}` }] });
      if (p === '/apis') return this.send(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [] });
      if (p === '/api/v1') return this.send(res, 200, this.resourceList());
      if (p === '/healthz' || p === '/readyz' || p === '/livez') {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        return void res.end('ok');
      }
    }
    const m = /^\/api\/v1(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(p);
    if (!m) return this.send(res, 404, statusObj(404, 'NotFound', 'the server could not find the requested resource'));
    const [, ns = '', resource = '', name, sub] = m;
    const def = RESOURCES[resource];
    if (!def) return this.send(res, 404, statusObj(404, 'NotFound', 'the server could not find the requested resource'));
    const gr = resource;
    const notFound = () => this.send(res, 404, statusObj(404, 'NotFound', `${gr} "${name}" not found`, { name, kind: gr }));

    if (sub) {
      if (resource === 'pods' && sub === 'log' && method === 'GET') return this.podLog(url, ns, name!, res);
      return this.send(res, 404, statusObj(404, 'NotFound', 'the server could not find the requested resource'));
    }

    switch (method) {
      case 'GET': {
        if (name) {
          const o = this.get(resource, ns, name);
          return o ? this.send(res, 200, this.maybeTable(req, [o], o, url.searchParams.get('includeObject'))) : notFound();
        }
        const watch = url.searchParams.get('watch');
        if (watch !== null && watch !== '0' && watch.toLowerCase() !== 'false') return this.watch(url, resource, ns, res);
        return this.sendList(req, url, resource, ns, res);
      }
      case 'POST': {
        const body = await this.readJson(req);
        if (name) return this.send(res, 405, statusObj(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
        const n = body.metadata?.name as string | undefined;
        if (!n) return this.send(res, 422, statusObj(422, 'Invalid', `${def.kind} "" is invalid: metadata.name: Required value: name or generateName is required`));
        if (this.get(resource, ns, n)) return this.send(res, 409, statusObj(409, 'AlreadyExists', `${gr} "${n}" already exists`, { name: n, kind: gr }));
        return this.send(res, 201, this.put(resource, { ...body, metadata: { ...body.metadata, ...(def.namespaced ? { namespace: ns } : {}) } }));
      }
      case 'PUT': {
        const body = await this.readJson(req);
        if (!this.get(resource, ns, name!)) return notFound();
        return this.send(res, 200, this.put(resource, { ...body, metadata: { ...body.metadata, name, ...(def.namespaced ? { namespace: ns } : {}) } }));
      }
      case 'PATCH': {
        const cur = this.get(resource, ns, name!);
        if (!cur) return notFound();
        const ct = String(req.headers['content-type'] ?? '');
        if (!/merge-patch\+json|strategic-merge-patch\+json/.test(ct)) {
          return this.send(res, 415, statusObj(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json`));
        }
        const patch = await this.readJson(req);
        return this.send(res, 200, this.put(resource, mergePatch(cur, patch) as Obj));
      }
      case 'DELETE': {
        if (!name) return this.send(res, 405, statusObj(405, 'MethodNotAllowed', 'deletecollection is not implemented by the double'));
        const gone = this.remove(resource, ns, name);
        if (!gone) return notFound();
        if (resource === 'pods') return this.send(res, 200, gone);
        return this.send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: gr, uid: gone.metadata.uid } });
      }
    }
    return this.send(res, 405, statusObj(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
  }

  private resourceList(): Obj {
    const resources: Obj[] = [];
    for (const [name, d] of Object.entries(RESOURCES)) {
      resources.push({ name, singularName: d.kind.toLowerCase(), namespaced: d.namespaced, kind: d.kind, verbs: VERBS, ...(d.shortNames ? { shortNames: d.shortNames } : {}) });
    }
    resources.push({ name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] });
    resources.push({ name: 'pods/exec', singularName: '', namespaced: true, kind: 'PodExecOptions', verbs: ['create', 'get'] });
    resources.push({ name: 'pods/attach', singularName: '', namespaced: true, kind: 'PodAttachOptions', verbs: ['create', 'get'] });
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'v1', resources };
  }

  private wantsTable(req: IncomingMessage): boolean {
    return /as=Table/.test(String(req.headers.accept ?? ''));
  }

  private maybeTable(req: IncomingMessage, items: Obj[], single: Obj | undefined, includeObject: string | null, meta: Obj = {}): Obj {
    if (!this.wantsTable(req)) return single ?? items;
    const now = Date.now();
    return {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: String(this.rv), ...meta },
      columnDefinitions: [
        { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 },
        { name: 'Age', type: 'string', format: '', description: 'CreationTimestamp', priority: 0 },
      ],
      rows: items.map((o) => ({
        cells: [o.metadata.name, `${Math.max(0, Math.round((now - Date.parse(o.metadata.creationTimestamp)) / 60000))}m`],
        ...this.rowObject(includeObject, o),
      })),
    };
  }

  /** A Table row's `object` by `includeObject`: Metadata (default), Object (the whole object, kind included) or None. */
  private rowObject(includeObject: string | null, o: Obj): Obj {
    if (includeObject === 'None') return {};
    if (includeObject === 'Object') return { object: o };
    return { object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata } };
  }

  /** List items as the API server encodes them: without kind and apiVersion (only the list has them). */
  private static listItem(o: Obj): Obj {
    const { kind: _kind, apiVersion: _apiVersion, ...item } = o;
    return item;
  }

  private sendList(req: IncomingMessage, url: URL, resource: string, ns: string, res: ServerResponse): void {
    let items = this.list(resource, ns);
    const fs = url.searchParams.get('fieldSelector');
    const byName = fs ? /^metadata\.name==?(.+)$/.exec(fs)?.[1] : undefined;
    if (byName) items = items.filter((o) => o.metadata.name === byName);
    const limit = Number(url.searchParams.get('limit') ?? 0);
    const cont = url.searchParams.get('continue');
    let start = 0;
    let listRv = this.rv;
    if (cont) {
      try {
        const c = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { rv: number; start: number };
        start = c.start;
        listRv = c.rv;
      } catch {
        return this.send(res, 400, statusObj(400, 'BadRequest', 'continue key is not valid: illegal base64 data'));
      }
    }
    const meta: Obj = { resourceVersion: String(listRv) };
    let page = items.slice(start);
    if (limit > 0 && page.length > limit) {
      page = page.slice(0, limit);
      meta.continue = Buffer.from(JSON.stringify({ rv: listRv, start: start + limit })).toString('base64url');
      meta.remainingItemCount = items.length - start - limit;
    }
    if (this.wantsTable(req)) return this.send(res, 200, this.maybeTable(req, page, undefined, url.searchParams.get('includeObject'), meta));
    this.send(res, 200, { kind: `${RESOURCES[resource]!.kind}List`, apiVersion: 'v1', metadata: meta, items: page.map(KubeApiDouble.listItem) });
  }

  private watch(url: URL, resource: string, ns: string, res: ServerResponse): void {
    const fromRv = url.searchParams.get('resourceVersion');
    const fs = url.searchParams.get('fieldSelector');
    const byName = fs ? /^metadata\.name==?(.+)$/.exec(fs)?.[1] : undefined;
    const oldest = this.history.length ? this.history[0]!.rv - 1 : this.rv;
    if (fromRv && fromRv !== '0' && Number(fromRv) < oldest) {
      return this.send(res, 410, statusObj(410, 'Expired', `too old resource version: ${fromRv} (${oldest})`));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'audit-id': randomUUID(), 'cache-control': 'no-cache, private', 'transfer-encoding': 'chunked' });
    const w: Watcher = {
      resource,
      namespace: ns,
      ...(byName ? { name: byName } : {}),
      send: (ev) => res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`),
    };
    if (!fromRv || fromRv === '0') {
      for (const o of this.list(resource, ns)) if (!byName || o.metadata.name === byName) w.send({ rv: 0, type: 'ADDED', resource, object: o });
    } else {
      for (const ev of this.history) {
        if (ev.rv <= Number(fromRv) || ev.resource !== resource) continue;
        if (ns && ev.object.metadata.namespace !== ns) continue;
        if (byName && ev.object.metadata.name !== byName) continue;
        w.send(ev);
      }
    }
    this.watchers.add(w);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      this.watchers.delete(w);
      if (timer) clearTimeout(timer);
    });
  }

  private podLog(url: URL, ns: string, name: string, res: ServerResponse): void {
    if (!this.get('pods', ns, name)) return this.send(res, 404, statusObj(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' }));
    const l = this.logOf(ns, name);
    res.writeHead(200, { 'content-type': 'text/plain', 'audit-id': randomUUID(), 'cache-control': 'no-cache, private', 'transfer-encoding': 'chunked' });
    res.write(l.lines.map((x) => `${x}\n`).join(''));
    const follow = url.searchParams.get('follow');
    if (follow === 'true' || follow === '1') {
      l.followers.add(res);
      res.on('close', () => l.followers.delete(res));
    } else res.end();
  }

  // ---- exec over WebSocket ------------------------------------------------

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const reject = (code: number, body: Obj) => {
      const text = JSON.stringify(body);
      socket.end(`HTTP/1.1 ${code} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    };
    if (!this.authorized(req)) return reject(401, statusObj(401, 'Unauthorized', 'Unauthorized'));
    const url = new URL(req.url ?? '/', 'https://double');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach)$/.exec(url.pathname);
    const upgrade = String(req.headers.upgrade).toLowerCase();
    if (!m || (upgrade !== 'websocket' && upgrade !== 'spdy/3.1')) return reject(400, statusObj(400, 'BadRequest', 'upgrade request not supported by the double'));
    if (!this.get('pods', m[1]!, m[2]!)) return reject(404, statusObj(404, 'NotFound', `pods "${m[2]}" not found`, { name: m[2], kind: 'pods' }));
    if (upgrade === 'spdy/3.1') return this.spdyExec(req, socket, head, url);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.runExec(ws, url.searchParams.getAll('command')));
  }

  private runExec(ws: WebSocket, command: string[]): void {
    const v5 = ws.protocol === 'v5.channel.k8s.io';
    const rec = { command, protocol: ws.protocol, stdin: '' };
    this.execs.push(rec);
    const out = (ch: number, text: string) => ws.send(Buffer.concat([Buffer.of(ch), Buffer.from(text)]));
    const exit = (code: number) => {
      const st =
        code === 0
          ? { metadata: {}, status: 'Success' }
          : { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } };
      out(3, JSON.stringify(st));
      ws.close(1000);
    };
    const [cmd, ...args] = command;
    if (cmd === 'echo') {
      out(1, `${args.join(' ')}\n`);
      return exit(0);
    }
    if (cmd === 'false') return exit(1);
    if (cmd === 'stderr') {
      out(2, `${args.join(' ')}\n`);
      return exit(0);
    }
    if (cmd === 'cat') {
      ws.on('message', (data: Buffer) => {
        if (data[0] === 0) {
          rec.stdin += data.subarray(1).toString('utf8');
          out(1, data.subarray(1).toString('utf8'));
        } else if (v5 && data[0] === 255 && data[1] === 0) exit(0);
      });
      // v4 has no way to close stdin alone: the client closes the connection.
      return;
    }
    out(2, `exec: "${cmd}": executable file not found in $PATH\n`);
    exit(127);
  }

  // SPDY/3.1 exec, as the kubelet serves it to client-go's SPDY executor: 101 with the
  // negotiated X-Stream-Protocol-Version (v4.channel.k8s.io), a SYN_REPLY for every stream
  // the client opens (error, stdin, stdout, stderr, resize, told apart by `streamtype`),
  // the command's output as DATA, the v4 JSON status on the error stream, then FIN.
  private spdyExec(req: IncomingMessage, socket: Socket, head: Buffer, url: URL): void {
    const offered = String(req.headers['x-stream-protocol-version'] ?? '').split(',').map((x) => x.trim());
    if (!offered.includes('v4.channel.k8s.io')) {
      const text = JSON.stringify(statusObj(403, 'Forbidden', 'the double only speaks v4.channel.k8s.io over SPDY'));
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n');
    const command = url.searchParams.getAll('command');
    const want = new Set(['error', ...(['stdin', 'stdout', 'stderr'] as const).filter((k) => url.searchParams.get(k) === 'true' || url.searchParams.get(k) === '1')]);
    const rec = { command, protocol: 'SPDY/3.1+v4.channel.k8s.io', stdin: '' };
    this.execs.push(rec);
    const reader = new FrameReader();
    const inflater = new HeaderInflater();
    const deflater = new HeaderDeflater();
    const streams = new Map<string, number>();
    let started = false;
    const send = (streamType: string, text: string, fin = false) => {
      const id = streams.get(streamType);
      if (id !== undefined && !socket.destroyed) socket.write(dataFrame(id, fin ? FLAG_FIN : 0, Buffer.from(text)));
    };
    const finish = (code: number) => {
      for (const t of ['stdout', 'stderr']) send(t, '', true);
      const st = code === 0 ? { metadata: {}, status: 'Success' } : { metadata: {}, status: 'Failure', message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } };
      send('error', JSON.stringify(st), true);
      setTimeout(() => socket.end(), 50);
    };
    const run = () => {
      const [cmd, ...args] = command;
      if (cmd === 'echo') {
        send('stdout', `${args.join(' ')}\n`);
        return finish(0);
      }
      if (cmd === 'false') return finish(1);
      if (cmd === 'cat') return; // finishes when stdin ends
      send('stderr', `exec: "${cmd}": executable file not found in $PATH\n`);
      finish(127);
    };
    const onFrames = async (frames: Frame[]) => {
      for (const f of frames) {
        if (f.control && f.type === CONTROL.SYN_STREAM) {
          const h = await inflater.inflate(headerBlockOf(f));
          const type = h.get('streamtype') ?? '';
          streams.set(type, f.streamId);
          const idBuf = Buffer.alloc(4);
          idBuf.writeUInt32BE(f.streamId);
          socket.write(controlFrame(CONTROL.SYN_REPLY, 0, Buffer.concat([idBuf, await deflater.deflate({})])));
          if (!started && [...want].every((w) => streams.has(w))) {
            started = true;
            run();
          }
        } else if (f.control && f.type === CONTROL.PING) {
          socket.write(f.raw);
        } else if (!f.control && f.streamId === streams.get('stdin')) {
          rec.stdin += f.payload.toString('utf8');
          if (command[0] === 'cat' && f.payload.length) send('stdout', f.payload.toString('utf8'));
          if (f.flags & FLAG_FIN && command[0] === 'cat') finish(0);
        }
      }
    };
    let chain = Promise.resolve();
    const feed = (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      chain = chain.then(() => onFrames(frames)).catch(() => void socket.destroy());
    };
    if (head.length) feed(head);
    socket.on('data', feed);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      inflater.close();
      deflater.close();
    });
  }

}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Obj = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
