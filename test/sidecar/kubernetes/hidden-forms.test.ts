// Card numbers hidden from a text scanner in Kubernetes objects that are not Secrets:
// base64 (ConfigMap binaryData, annotation values, in every alphabet and padding), JSON
// held in a string (last-applied-configuration) and JSON escapes of digits, in bodies cut
// anywhere. Properties over seeded generators, then the exact cases. No server involved.

import { expect } from 'chai';
import fc from 'fast-check';
import { planBody } from '../../../sidecar/kubernetes/response-body.js';
import { createJsonMasker } from '../../../core/mask/json.js';
import { DocumentMasker } from '../../../sidecar/kubernetes/document-mask.js';
import { base64Form, encodeBase64, unescapeDigits } from '../../../sidecar/kubernetes/hidden-forms.js';
import { requestInfo } from '../../../core/kube/request-info.js';
import { luhnComplete } from '../../support/cards.js';
import { PAN, PAN_MASKED } from './harness.js';

const RUNS = { numRuns: 150, seed: 20261201 };
const LIST = requestInfo('GET', '/api/v1/namespaces/payments/configmaps');
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** The masked body, fed to the response masker in the given pieces. */
function maskInPieces(body: Buffer, cuts: number[]): Buffer {
  const plan = planBody(LIST, 'application/json', 'mask', {});
  if (plan.kind !== 'masked') throw new Error(plan.why);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...new Set(cuts.map((x) => x % (body.length + 1)))].sort((a, b) => a - b)) {
    out.push(plan.masker.write(body.subarray(at, c)));
    at = c;
  }
  out.push(plan.masker.write(body.subarray(at)), plan.masker.end());
  return Buffer.concat(out);
}

const panArb = fc.tuple(fc.constantFrom('4', '51', '37', '6011'), fc.integer({ min: 0, max: 1e9 })).map(([iin, n]) => {
  const body = `${iin}${String(n).padStart(9, '0')}`;
  return luhnComplete(body.padEnd(iin === '37' ? 14 : 15, '7'));
});
const wordArb = fc.stringMatching(/^[a-z ]{0,12}$/);

type Form = { name: string; hide: (text: string) => string; reveal: (s: string) => string };
const b64forms: Form[] = [
  { name: 'base64', hide: (t) => Buffer.from(t).toString('base64'), reveal: (s) => Buffer.from(s, 'base64').toString() },
  { name: 'base64 unpadded', hide: (t) => Buffer.from(t).toString('base64').replace(/=+$/, ''), reveal: (s) => Buffer.from(s, 'base64').toString() },
  { name: 'base64url', hide: (t) => Buffer.from(t).toString('base64url'), reveal: (s) => Buffer.from(s, 'base64url').toString() },
];
const jsonForms: Form[] = [
  { name: 'JSON in a string', hide: (t) => JSON.stringify({ note: t }), reveal: (s) => String((JSON.parse(s) as { note: string }).note) },
  {
    name: 'JSON with escaped digits',
    hide: (t) => JSON.stringify({ note: t }).replace(/[0-9]/g, (d) => `\\u00${d.charCodeAt(0).toString(16)}`),
    reveal: (s) => String((JSON.parse(s) as { note: string }).note),
  },
  { name: 'escaped digits in text', hide: (t) => t.replace(/[0-9]/g, (d) => `\\u00${d.charCodeAt(0).toString(16)}`), reveal: (s) => unescapeDigits(s) },
  { name: 'base64 of JSON', hide: (t) => Buffer.from(JSON.stringify({ note: t })).toString('base64'), reveal: (s) => String((JSON.parse(Buffer.from(s, 'base64').toString()) as { note: string }).note) },
];
const formArb = fc.constantFrom(...b64forms, ...jsonForms);

// ConfigMap `data` is text: only the JSON forms apply there (base64 in it is just text).
const itemArb = fc.oneof(
  fc.record({ pan: panArb, before: wordArb, after: wordArb, form: formArb, where: fc.constantFrom('annotation', 'binaryData', 'last-applied') }),
  fc.record({ pan: panArb, before: wordArb, after: wordArb, form: fc.constantFrom(...jsonForms.filter((f) => !f.name.startsWith('base64'))), where: fc.constant('data') }),
);
type Item = { pan: string; before: string; after: string; form: Form; where: string };

function configMap(i: Item, n: number): Record<string, unknown> {
  const text = `${i.before}${i.pan}${i.after}`;
  const metadata: Record<string, unknown> = { name: `cm-${n}`, namespace: 'payments' };
  const cm: Record<string, unknown> = { metadata, data: { plain: 'nothing' } };
  if (i.where === 'annotation') metadata.annotations = { 'example.com/hidden': i.form.hide(text) };
  else if (i.where === 'binaryData') cm.binaryData = { blob: Buffer.from(text).toString('base64') };
  else if (i.where === 'data') cm.data = { plain: 'nothing', 'config.json': i.form.hide(text) };
  else metadata.annotations = { [LAST_APPLIED]: `${JSON.stringify({ kind: 'ConfigMap', metadata: { annotations: { hidden: i.form.hide(text) } } })}\n` };
  return cm;
}

function revealed(cm: any, i: Item): string {
  if (i.where === 'annotation') return i.form.reveal(cm.metadata.annotations['example.com/hidden']);
  if (i.where === 'binaryData') return Buffer.from(cm.binaryData.blob, 'base64').toString();
  if (i.where === 'data') return i.form.reveal(cm.data['config.json']);
  return i.form.reveal(JSON.parse(cm.metadata.annotations[LAST_APPLIED]).metadata.annotations.hidden);
}

describe('hidden card numbers in objects that are not Secrets', () => {
  it('are masked in every form, however the body is cut, pretty or compact', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }), (items, pretty, cuts) => {
        const list = { kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: items.map(configMap) };
        const body = Buffer.from(pretty ? JSON.stringify(list, null, 2) : JSON.stringify(list));
        const whole = maskInPieces(body, []);
        expect(maskInPieces(body, cuts).equals(whole)).to.equal(true);
        const out = JSON.parse(whole.toString()) as { items: unknown[] };
        items.forEach((i, n) => {
          const shown = revealed(out.items[n], i);
          expect(shown, `${i.form.name} in ${i.where}`).not.to.contain(i.pan);
          expect(shown).to.contain(i.pan.slice(-4));
        });
      }),
      RUNS,
    );
  });

  it('leave a body without annotations or binaryData byte for byte as the JSON masker makes it', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ name: wordArb, note: wordArb, pan: panArb }), { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 4 }), (rows, cuts) => {
        const list = { kind: 'ConfigMapList', items: rows.map((r) => ({ metadata: { name: r.name }, data: { note: `${r.note} ${r.pan}` } })) };
        const body = Buffer.from(JSON.stringify(list));
        const json = createJsonMasker({});
        expect(maskInPieces(body, cuts).toString()).to.equal(Buffer.concat([json.write(body), json.end()]).toString());
      }),
      RUNS,
    );
  });

  it('base64 keeps its alphabet and padding when masked, and is left alone when it hides nothing', () => {
    fc.assert(
      fc.property(panArb, fc.constantFrom(...b64forms), (pan, form) => {
        const m = new DocumentMasker('mask', {});
        const masked = m.annotationValue(form.hide(`card ${pan}`));
        expect(base64Form(masked)).not.to.equal(undefined);
        expect(masked.endsWith('=')).to.equal(form.hide(`card ${pan}`).endsWith('='));
        expect(form.reveal(masked)).to.equal(`card ${'*'.repeat(pan.length - 4)}${pan.slice(-4)}`);
        const plain = form.hide('nothing to see here');
        expect(m.annotationValue(plain)).to.equal(plain);
      }),
      RUNS,
    );
  });
});

describe('hidden forms, exact cases', () => {
  const m = new DocumentMasker('mask', {});

  it('stars a card-data key inside JSON held in an annotation', () => {
    const out = m.annotationValue('{"kind":"ConfigMap","data":{"cvv":"123","x":"y"}}\n');
    expect(out).to.equal('{"kind":"ConfigMap","data":{"cvv":"***","x":"y"}}\n');
  });

  it('masks binaryData of a ConfigMap held in last-applied-configuration', () => {
    const applied = `${JSON.stringify({ kind: 'ConfigMap', binaryData: { b: Buffer.from(PAN).toString('base64') } })}\n`;
    const out = m.maskDocument({ metadata: { annotations: { [LAST_APPLIED]: applied } } }) as any;
    expect(Buffer.from(JSON.parse(out.metadata.annotations[LAST_APPLIED]).binaryData.b, 'base64').toString()).to.equal(PAN_MASKED);
  });

  it('decodes \\u escapes of digits in a string that is not JSON', () => {
    expect(m.annotationValue(`card \\u0034${PAN.slice(1)}`)).to.equal(`card ${PAN_MASKED}`);
  });

  it('leaves an annotation that only looks like base64 as it is', () => {
    for (const v of ['kubernetes.io/service-account-token', 'b1f9b9bb-e335-4274-90f6-fdc88253cad4', 'abcdefghijklmnop']) expect(m.annotationValue(v)).to.equal(v);
  });

  it('round-trips every base64 variant it recognises', () => {
    const bytes = Buffer.from([0xfb, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const s of [bytes.toString('base64'), bytes.toString('base64url'), `${bytes.toString('base64url')}`]) expect(encodeBase64(base64Form(s)!)).to.equal(s);
  });

  it('refuses a body whose annotations map is not valid JSON', () => {
    const plan = planBody(LIST, 'application/json', 'mask', {});
    if (plan.kind !== 'masked') throw new Error('no plan');
    expect(() => plan.masker.write(Buffer.from('{"metadata":{"annotations":{"a":tru}}}'))).to.throw(/annotations.*not valid JSON/);
  });
});
