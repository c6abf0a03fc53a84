// How an upstream response body reaches the agent: every byte through a masker.
// JSON (objects, lists, watch streams, Tables) streams through the JSON masker, behind
// a filter that masks annotations and binaryData maps as documents (sensitive-maps.ts);
// text (pods/log, healthz) through the text masker; a Secrets request's body is parsed
// so its base64 values can be masked (a whole object, or one watch event at a time).
// Which masker is chosen by the resource the request names, never by the body.
// Anything else is refused: an unknown encoding is never passed unmasked.

import { createJsonMasker } from '../../core/mask/json.js';
import type { JsonMasker } from '../../core/mask/json.js';
import { optionsFromSpec } from '../../core/mask/options.js';
import type { MaskingSpec } from '../../core/policy/types.js';
import { createTextMasker } from '../../core/mask/text.js';
import type { StreamMasker } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';
import type { KubeRequest } from '../../core/policy/types.js';
import { SecretMasker } from './secret-mask.js';
import type { SecretMode } from './secret-mask.js';
import { DocumentMasker } from './document-mask.js';
import { SensitiveMapFilter } from './sensitive-maps.js';
import type { MapKind } from './sensitive-maps.js';

/** Largest Secret response held to be parsed (a list of the largest Secrets etcd stores is far below). */
export const MAX_SECRET_BODY = 64 * 1024 * 1024;

export type BodyPlan =
  | { kind: 'masked'; masker: StreamMasker; /** Hands a pooled masker back once its response ended cleanly. */ release?: () => void }
  | { kind: 'refuse'; why: string };

const optionsBySpec = new WeakMap<object, MaskOptions>();
/**
 * One MaskOptions object per policy masking spec (a reload brings a new spec, hence new
 * options): saves an allocation per request and keys the masker pools below.
 */
export function maskOptionsFor(spec: Pick<MaskingSpec, 'pan' | 'fields'>): MaskOptions {
  let o = optionsBySpec.get(spec);
  if (!o) {
    o = optionsFromSpec(spec);
    optionsBySpec.set(spec, o);
  }
  return o;
}

/** The map filter, then the JSON masker: one stream masker. */
class JsonBodyMasker implements StreamMasker {
  constructor(private readonly maps: SensitiveMapFilter, private readonly json: JsonMasker) {}
  get pansMasked(): number {
    return this.json.pansMasked;
  }
  write(chunk: Uint8Array): Buffer {
    const b = this.maps.write(chunk);
    return b.length ? this.json.write(b) : b;
  }
  end(): Buffer {
    const rest = this.maps.end();
    const a = rest.length ? this.json.write(rest) : rest;
    const b = this.json.end();
    return a.length === 0 ? b : b.length === 0 ? a : Buffer.concat([a, b]);
  }
  reset(): void {
    this.maps.reset();
    this.json.reset();
  }
}

// JSON maskers are reused across responses (reset() between them): building one resolves
// its options and allocates its scanner and tables, a visible share of a small GET.
const POOL_MAX = 64;
const jsonPools = [new WeakMap<MaskOptions, JsonBodyMasker[]>(), new WeakMap<MaskOptions, JsonBodyMasker[]>()];
const ANY_MAPS: readonly MapKind[] = ['annotations', 'binaryData'];
const CONFIGMAP_MAPS: readonly MapKind[] = ['annotations', 'binaryData', 'data'];
function pooledJsonMasker(opts: MaskOptions, configMaps: boolean): BodyPlan {
  const pools = jsonPools[configMaps ? 1 : 0]!;
  let pool = pools.get(opts);
  if (!pool) {
    pool = [];
    pools.set(opts, pool);
  }
  // A copy of a Secret in an annotation of another object is masked, not redacted.
  const masker = pool.pop() ?? new JsonBodyMasker(new SensitiveMapFilter(new DocumentMasker('mask', opts), configMaps ? CONFIGMAP_MAPS : ANY_MAPS), createJsonMasker(opts));
  const p = pool;
  return {
    kind: 'masked',
    masker,
    release: () => {
      if (p.length < POOL_MAX) {
        masker.reset();
        p.push(masker);
      }
    },
  };
}

const JSON_TYPE = /^application\/(json|[a-z0-9.+-]*\+json)\s*(;|$)/i;
const TEXT_TYPE = /^text\/plain\s*(;|$)/i;

export function planBody(request: KubeRequest, contentType: string | undefined, secrets: SecretMode, opts: MaskOptions): BodyPlan {
  const ct = (contentType ?? '').trim();
  const isSecret = !request.nonResource && request.resource === 'secrets' && request.apiGroup === '' && request.subresource === '';
  if (JSON_TYPE.test(ct)) {
    if (isSecret) return { kind: 'masked', masker: new SecretStreamMasker(new SecretMasker(secrets, opts), request.verb === 'watch') };
    return pooledJsonMasker(opts, !request.nonResource && request.resource === 'configmaps' && request.apiGroup === '');
  }
  if (TEXT_TYPE.test(ct)) {
    if (isSecret) return { kind: 'refuse', why: `a Secret response arrived as '${ct}'` };
    return { kind: 'masked', masker: createTextMasker(opts) };
  }
  return { kind: 'refuse', why: ct ? `the API server answered with '${ct}' where JSON was requested` : 'the API server answered without a content type' };
}

/**
 * Secret bodies: a get/list is buffered and masked as one document; a watch is
 * split at newlines (the API server writes one event per line) and each event is
 * masked as it completes, for as long as the watch lives.
 */
export class SecretStreamMasker implements StreamMasker {
  private chunks: Buffer[] = [];
  private size = 0;
  private masked = 0;

  constructor(private readonly secrets: SecretMasker, private readonly perLine: boolean) {}

  get pansMasked(): number {
    return this.masked;
  }

  write(chunk: Uint8Array): Buffer {
    this.size += chunk.length;
    if (this.size > MAX_SECRET_BODY) throw new Error(`Secret response larger than ${MAX_SECRET_BODY} bytes`);
    this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    if (!this.perLine) return Buffer.alloc(0);
    const all = Buffer.concat(this.chunks);
    const nl = all.lastIndexOf(0x0a);
    if (nl < 0) {
      this.chunks = [all];
      return Buffer.alloc(0);
    }
    const rest = all.subarray(nl + 1);
    this.chunks = rest.length ? [Buffer.from(rest)] : [];
    this.size = rest.length;
    return this.maskLines(all.subarray(0, nl + 1));
  }

  end(): Buffer {
    const all = Buffer.concat(this.chunks);
    this.chunks = [];
    if (all.length === 0) return all;
    return this.perLine ? this.maskLines(all) : Buffer.from(JSON.stringify(this.secrets.maskDocument(JSON.parse(all.toString('utf8')))));
  }

  private maskLines(buf: Buffer): Buffer {
    const out: string[] = [];
    for (const line of buf.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      out.push(JSON.stringify(this.secrets.maskDocument(JSON.parse(line))));
    }
    return Buffer.from(out.map((l) => `${l}\n`).join(''));
  }
}
