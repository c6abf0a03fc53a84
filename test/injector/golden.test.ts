// Golden files: one set of input pods and expected pods, checked through the
// webhook (AdmissionReview over real HTTPS, patch applied with fast-json-patch)
// and through `agentgate inject` (manifests in, YAML out). A stale golden file
// fails; UPDATE_GOLDEN=1 rewrites them from the webhook path.

import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import jsonpatch from 'fast-json-patch';
import { startWebhookServer } from '../../injector/webhook-server.js';
import type { WebhookServer } from '../../injector/webhook-server.js';
import { injectManifests } from '../../injector/manifests.js';
import { createLogger } from '../../core/log.js';
import type { Pod } from '../../injector/pod-types.js';
import {
  GOLDEN_DIR, GOLDEN_VERSION, goldenCases, goldenConfig, derivedInput, renderGolden, checkGolden, admissionReview, makeCert, httpsClient, podProblems,
} from './support.js';
import type { GoldenOutcome, TestCert } from './support.js';

const log = createLogger('injector-test', 'silent');

describe('injector golden files', function () {
  let cert: TestCert;
  let native: WebhookServer;
  let classic: WebhookServer;
  let client: ReturnType<typeof httpsClient>;

  before(async () => {
    cert = makeCert();
    const common = { certFile: cert.certFile, keyFile: cert.keyFile, host: '127.0.0.1', port: 0, log, version: GOLDEN_VERSION };
    native = await startWebhookServer({ ...common, config: goldenConfig(false) });
    classic = await startWebhookServer({ ...common, config: goldenConfig(true) });
    client = httpsClient(cert.cert);
  });
  after(async () => {
    await client.close();
    await native.close();
    await classic.close();
    cert.cleanup();
  });

  const cases: { name: string; classic: boolean; input: () => Pod; outFile: string }[] = [
    ...goldenCases().map((c) => ({ ...c, input: () => c.input })),
    // Derived from plain's golden output, so they run after it (and after its regeneration).
    { name: 'already-injected', classic: false, input: () => derivedInput('already-injected'), outFile: path.join(GOLDEN_DIR, 'already-injected.out.yaml') },
    { name: 'reinvoked', classic: false, input: () => derivedInput('reinvoked'), outFile: path.join(GOLDEN_DIR, 'reinvoked.out.yaml') },
  ];

  for (const c of cases) {
    describe(c.name, () => {
      it('the webhook answers with a patch that turns the input into the golden pod', async () => {
        const input = c.input();
        const review = admissionReview(input);
        const res = await client.post(`https://127.0.0.1:${(c.classic ? classic : native).port}/mutate`, JSON.stringify(review));
        expect(res.status).to.equal(200);
        const body = res.json();
        expect(body.apiVersion).to.equal('admission.k8s.io/v1');
        expect(body.kind).to.equal('AdmissionReview');
        expect(body.response.uid).to.equal((review.request as { uid: string }).uid);
        let outcome: GoldenOutcome;
        if (!body.response.allowed) {
          expect(body.response.status.code).to.equal(403);
          expect(body.response.patch).to.equal(undefined);
          outcome = { action: 'refuse', message: body.response.status.message };
        } else if (body.response.patch === undefined) {
          expect(body.response.patchType).to.equal(undefined);
          outcome = c.name === 'already-injected' ? { action: 'inject', pod: input, warnings: body.response.warnings ?? [] } : { action: 'skip' };
        } else {
          expect(body.response.patchType).to.equal('JSONPatch');
          const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8'));
          // validateOperation=true: every operation must apply to the input as it is.
          const pod = jsonpatch.applyPatch(structuredClone(input), ops, true, false).newDocument as Pod;
          expect(podProblems(pod), 'the patched pod must be one the API server accepts').to.deep.equal([]);
          outcome = { action: 'inject', pod, warnings: body.response.warnings ?? [] };
        }
        const actual = renderGolden(outcome);
        expect(actual).to.equal(checkGolden(c.outFile, actual));
      });

      it('agentgate inject writes the golden pod', () => {
        const input = c.input();
        const out = injectManifests(stringify(input), 'input.yaml', goldenConfig(c.classic), { version: GOLDEN_VERSION });
        const golden = readFileSync(c.outFile, 'utf8');
        const expected = parse(golden) as Record<string, unknown>;
        if ('refused' in expected) {
          expect(out.errors).to.have.length(1);
          expect(out.errors[0]).to.match(/^input\.yaml:\d+:\d+: document 1 \(Pod /);
          expect(out.errors[0].endsWith(`: ${expected.refused as string}`), out.errors[0]).to.equal(true);
          return;
        }
        expect(out.errors).to.deep.equal([]);
        if ('skipped' in expected) {
          expect(out.injected).to.equal(0);
          expect(parse(out.yaml)).to.deep.equal(input);
          return;
        }
        const warnings = out.warnings.map((w) => w.replace(/^input\.yaml: document 1 \([^)]*\): /, ''));
        expect(out.objects).to.have.length(1);
        expect(renderGolden({ action: 'inject', pod: parse(out.yaml) as Pod, warnings })).to.equal(golden);
      });
    });
  }

  it('has no golden output without an input (a left-over golden file is stale too)', () => {
    const outs = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.out.yaml')).map((f) => f.slice(0, -'.out.yaml'.length)).sort();
    expect(outs).to.deep.equal(cases.map((c) => c.name).sort());
  });

  it('re-injecting an injected pod gives the same pod (already-injected equals plain)', () => {
    expect(readFileSync(path.join(GOLDEN_DIR, 'already-injected.out.yaml'), 'utf8')).to.equal(readFileSync(path.join(GOLDEN_DIR, 'plain.out.yaml'), 'utf8'));
  });
});
