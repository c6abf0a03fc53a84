import { expect } from 'chai';
import fc from 'fast-check';
import { canonicalTarget } from '../../../core/kube/canonical.js';
import { RequestInfoError } from '../../../core/kube/request-info-error.js';

const query = (t: string) => Object.fromEntries(canonicalTarget(t).query);

describe('canonical request targets (the API server\'s reading)', () => {
  it('decodes path segments and keeps the upstream target as sent when nothing needs encoding', () => {
    const t = canonicalTarget('/api/v1/namespaces/payments/pods?limit=500&watch=1');
    expect(t.segments).to.deep.equal(['api', 'v1', 'namespaces', 'payments', 'pods']);
    expect(t.path).to.equal('/api/v1/namespaces/payments/pods');
    expect(t.target).to.equal('/api/v1/namespaces/payments/pods?limit=500&watch=1');
  });

  it('decodes percent escapes in the path once, and re-encodes only what needs it', () => {
    const t = canonicalTarget('/api/v1/namespaces/pay%6dents/configmaps/a%20b');
    expect(t.segments.slice(3)).to.deep.equal(['payments', 'configmaps', 'a b']);
    expect(t.target).to.equal('/api/v1/namespaces/payments/configmaps/a%20b');
  });

  it('reads + as a space and decodes keys and values of the query, as url.ParseQuery does', () => {
    expect(query('/x?label%53elector=app+in+(a%2Cb)')).to.deep.equal({ labelSelector: ['app in (a,b)'] });
    expect(canonicalTarget('/x?labelSelector=app+in+(a%2Cb)').target).to.equal('/x?labelSelector=app%20in%20(a%2Cb)');
  });

  it('keeps a selector value readable upstream (=, : and , need no escape in a value)', () => {
    expect(canonicalTarget('/api/v1/pods?fieldSelector=metadata.name%3Dweb-0%2Cspec.nodeName%3Dn:1').target).to.equal('/api/v1/pods?fieldSelector=metadata.name=web-0,spec.nodeName=n:1');
  });

  it('skips empty pairs and reads a bare key as an empty value', () => {
    expect(query('/x?&&watch&limit=5&')).to.deep.equal({ watch: [''], limit: ['5'] });
    expect(canonicalTarget('/x?&&watch&limit=5&').target).to.equal('/x?watch=&limit=5');
  });

  it('keeps the repeated command of an exec in order', () => {
    expect(query('/api/v1/namespaces/a/pods/p/exec?command=ls&command=-l&stdout=true')).to.deep.equal({ command: ['ls', '-l'], stdout: ['true'] });
  });

  it('keeps a trailing slash', () => {
    expect(canonicalTarget('/apis/').target).to.equal('/apis/');
    expect(canonicalTarget('/').target).to.equal('/');
  });

  const refused: [string, string, string][] = [
    ['a raw ; in the query (Go drops the pair)', '/api/v1/secrets?fieldSelector=metadata.name%3Dapp,a;b', "query has a raw ';'"],
    ['an invalid escape in the query (Go drops the pair)', '/api/v1/secrets?fieldSelector=metadata.name%3Dapp%zz', 'invalid percent escape'],
    ['a truncated escape in the query', '/api/v1/secrets?limit=5%2', 'invalid percent escape'],
    ['an escape of invalid UTF-8 in the query', '/api/v1/secrets?x=%ff', 'invalid UTF-8'],
    ['an invalid escape in the path', '/api/v1/namespaces/%zz/pods', 'invalid percent escape'],
    ['a repeated parameter', '/api/v1/secrets?fieldSelector=metadata.name%3Da&fieldSelector=', "'fieldSelector' is given more than once"],
    ['a parameter repeated under another encoding', '/api/v1/secrets?watch=0&w%61tch=1', "'watch' is given more than once"],
    ['a backslash', '/api/v1/namespaces/a/pods/x/exec/..\\..\\b\\pods\\y\\exec', 'backslash'],
    ['an encoded backslash', '/api/v1/namespaces/a%5cb/pods', 'encoded backslash'],
    ['a dot segment', '/api/v1/./pods', "'.' or '..' segment"],
    ['a dot-dot segment', '/api/v1/namespaces/a/../b/pods', "'.' or '..' segment"],
    ['an encoded dot-dot segment', '/api/v1/namespaces/a/%2E%2e/b/pods', "'.' or '..' segment"],
    ['an empty segment', '/api/v1//pods', "empty segment ('//')"],
    ['an encoded slash', '/api/v1/namespaces/a%2Fb/pods', "encoded '/'"],
    ['a network-path target (//host/…)', '//api/v1/pods', 'not a path (origin-form)'],
    ['an absolute-form target', 'https://evil.example/api/v1/pods', 'not a path (origin-form)'],
    ['an asterisk-form target', '*', 'not a path (origin-form)'],
    ['a raw #', '/api/v1/pods#x', "raw '#'"],
    ['a raw non-ASCII character', '/api/v1/namespaces/caf\u00e9/pods', 'outside printable ASCII'],
    ['an encoded control character', '/api/v1/namespaces/a%00/pods', 'control character'],
  ];
  for (const [what, target, message] of refused) {
    it(`refuses ${what}`, () => {
      expect(() => canonicalTarget(target)).to.throw(RequestInfoError, message);
    });
  }

  it('builds a target that reads back to the same structure (seeded)', () => {
    const segment = fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '.', '_', '~', ':', '@', ' ', '%', '+', ';', '&', '=', '?', '#', 'é', '\u4e2d'), minLength: 1, maxLength: 8 })
      .filter((s) => s !== '.' && s !== '..');
    const value = fc.string({ unit: fc.constantFrom('a', '=', ',', ' ', '+', '%', '&', ';', '/', 'é', '!', '\\'), maxLength: 8 });
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.uniqueArray(fc.tuple(fc.constantFrom('a', 'b', 'fieldSelector', 'x y'), value), { selector: (p) => p[0], maxLength: 3 }), (segs, pairs) => {
        const raw = '/' + segs.map(encodeURIComponent).join('/') + (pairs.length ? '?' + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&') : '');
        const t = canonicalTarget(raw);
        expect(t.segments).to.deep.equal(segs);
        expect(Object.fromEntries(t.query)).to.deep.equal(Object.fromEntries(pairs.map(([k, v]) => [k, [v]])));
        const again = canonicalTarget(t.target);
        expect(again.target).to.equal(t.target);
        expect(again.segments).to.deep.equal(segs);
      }),
      { seed: 11, numRuns: 500 },
    );
  });
});
