import { expect } from 'chai';
import { requestInfo, parseKubeRequestLine, readImpersonationHeaders, impersonationRequests, RequestInfoError } from '../../../core/kube/request-info.js';

type Row = [method: string, target: string, verb: string, apiGroup: string, apiVersion: string, namespace: string, resource: string, subresource: string, name: string];

// Expected values as the API server's RequestInfoFactory classifies these requests.
const RESOURCE_REQUESTS: Row[] = [
  ['GET', '/api/v1/namespaces/payments/pods/web-0', 'get', '', 'v1', 'payments', 'pods', '', 'web-0'],
  ['HEAD', '/api/v1/namespaces/payments/pods/web-0', 'get', '', 'v1', 'payments', 'pods', '', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods', 'list', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/pods', 'list', '', 'v1', '', 'pods', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods?watch=true&resourceVersion=10', 'watch', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods?watch=1', 'watch', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods?watch=', 'watch', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods?watch=false', 'list', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods?watch=0', 'list', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/watch/namespaces/payments/pods', 'watch', '', 'v1', 'payments', 'pods', '', ''],
  ['GET', '/api/v1/watch/namespaces/payments/pods/web-0', 'watch', '', 'v1', 'payments', 'pods', '', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods?fieldSelector=metadata.name%3Dweb-0', 'list', '', 'v1', 'payments', 'pods', '', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods?fieldSelector=status.phase%3DRunning,metadata.name%3D%3Dweb-1', 'list', '', 'v1', 'payments', 'pods', '', 'web-1'],
  ['GET', '/api/v1/namespaces/payments/pods?fieldSelector=metadata.name!%3Dweb-0', 'list', '', 'v1', 'payments', 'pods', '', ''],
  ['POST', '/api/v1/namespaces/payments/configmaps', 'create', '', 'v1', 'payments', 'configmaps', '', ''],
  ['PUT', '/api/v1/namespaces/payments/configmaps/cfg', 'update', '', 'v1', 'payments', 'configmaps', '', 'cfg'],
  ['PATCH', '/apis/apps/v1/namespaces/payments/deployments/api', 'patch', 'apps', 'v1', 'payments', 'deployments', '', 'api'],
  ['PUT', '/apis/apps/v1/namespaces/payments/deployments/api/scale', 'update', 'apps', 'v1', 'payments', 'deployments', 'scale', 'api'],
  ['DELETE', '/api/v1/namespaces/payments/secrets/keys', 'delete', '', 'v1', 'payments', 'secrets', '', 'keys'],
  ['DELETE', '/api/v1/namespaces/payments/secrets', 'deletecollection', '', 'v1', 'payments', 'secrets', '', ''],
  ['GET', '/api/v1/namespaces/payments/pods/web-0/log?follow=true', 'get', '', 'v1', 'payments', 'pods', 'log', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods/web-0/exec?command=sh&stdin=true&tty=true', 'create', '', 'v1', 'payments', 'pods', 'exec', 'web-0'],
  ['POST', '/api/v1/namespaces/payments/pods/web-0/exec?command=sh', 'create', '', 'v1', 'payments', 'pods', 'exec', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods/web-0/attach?stdout=true', 'create', '', 'v1', 'payments', 'pods', 'attach', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods/web-0/portforward?ports=5432', 'create', '', 'v1', 'payments', 'pods', 'portforward', 'web-0'],
  ['GET', '/api/v1/namespaces/payments/pods/web-0/proxy/metrics', 'get', '', 'v1', 'payments', 'pods', 'proxy', 'web-0'],
  ['GET', '/api/v1/namespaces', 'list', '', 'v1', '', 'namespaces', '', ''],
  ['GET', '/api/v1/namespaces/payments', 'get', '', 'v1', 'payments', 'namespaces', '', 'payments'],
  ['DELETE', '/api/v1/namespaces/payments', 'delete', '', 'v1', 'payments', 'namespaces', '', 'payments'],
  ['PUT', '/api/v1/namespaces/payments/status', 'update', '', 'v1', 'payments', 'namespaces', 'status', 'payments'],
  ['PUT', '/api/v1/namespaces/payments/finalize', 'update', '', 'v1', 'payments', 'namespaces', 'finalize', 'payments'],
  ['GET', '/api/v1/nodes/node-1', 'get', '', 'v1', '', 'nodes', '', 'node-1'],
  ['GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles', 'list', 'rbac.authorization.k8s.io', 'v1', '', 'clusterroles', '', ''],
  ['GET', '/api/v1/namespaces/pay%6dents/secrets/keys', 'get', '', 'v1', 'payments', 'secrets', '', 'keys'],
  ['OPTIONS', '/api/v1/namespaces/payments/pods', '', '', 'v1', 'payments', 'pods', '', ''],
];

const NON_RESOURCE: [string, string, string, string][] = [
  ['GET', '/version', 'get', '/version'],
  ['GET', '/api', 'get', '/api'],
  ['GET', '/api/v1', 'get', '/api/v1'],
  ['GET', '/apis', 'get', '/apis'],
  ['GET', '/apis/apps/v1', 'get', '/apis/apps/v1'],
  ['GET', '/openapi/v3/apis/apps/v1?hash=abc', 'get', '/openapi/v3/apis/apps/v1'],
  ['HEAD', '/healthz', 'head', '/healthz'],
  ['POST', '/logs/x', 'post', '/logs/x'],
  ['GET', '/', 'get', '/'],
];

describe('kubernetes request info (RequestInfoFactory semantics)', () => {
  for (const [method, target, verb, apiGroup, apiVersion, namespace, resource, subresource, name] of RESOURCE_REQUESTS) {
    it(`${method} ${target} → ${verb} ${resource}${subresource ? `/${subresource}` : ''}`, () => {
      expect(requestInfo(method, target)).to.deep.equal({
        protocol: 'kubernetes', verb, apiGroup, apiVersion, namespace, resource, subresource, name, nonResource: false,
        path: decodeURIComponent(target.split('?')[0]),
      });
    });
  }

  for (const [method, target, verb, path] of NON_RESOURCE) {
    it(`${method} ${target} → non-resource ${verb}`, () => {
      expect(requestInfo(method, target)).to.deep.equal({
        protocol: 'kubernetes', verb, apiGroup: '', apiVersion: '', namespace: '', resource: '', subresource: '', name: '', nonResource: true, path,
      });
    });
  }

  it('refuses the watch and proxy path prefixes without a resource, as the server does', () => {
    expect(() => requestInfo('GET', '/api/v1/watch')).to.throw(RequestInfoError, "unable to determine kind and namespace from url '/api/v1/watch'");
  });

  it('refuses an invalid percent escape', () => {
    expect(() => requestInfo('GET', '/api/v1/namespaces/%zz/pods')).to.throw(RequestInfoError, "path '/api/v1/namespaces/%zz/pods' has an invalid percent escape or invalid UTF-8");
  });

  it('refuses dot segments, which URL handling on the way could resolve differently', () => {
    expect(() => requestInfo('GET', '/api/v1/namespaces/payments/../kube-system/secrets')).to.throw(
      RequestInfoError,
      "path '/api/v1/namespaces/payments/../kube-system/secrets' has a '.' or '..' segment, which URL handling on the way may resolve",
    );
    expect(() => requestInfo('GET', '/api/v1/namespaces/payments/%2e%2e/kube-system/secrets')).to.throw(RequestInfoError);
    expect(() => requestInfo('GET', '/api/v1/./pods')).to.throw(RequestInfoError);
  });

  describe('field selectors, read with fields.ParseSelector\'s grammar', () => {
    const nameOf = (selector: string) => requestInfo('GET', `/api/v1/namespaces/a/secrets?fieldSelector=${encodeURIComponent(selector)}`).name;
    it('takes the first metadata.name equality of the sorted terms, as RequiresExactMatch does', () => {
      expect(nameOf('metadata.name=b,metadata.name=a')).to.equal('a');
    });
    it('does not trim spaces around the field (the server does not)', () => {
      expect(nameOf(' metadata.name=a')).to.equal('');
    });
    it('unescapes \\, \\, and \\= in a value', () => {
      expect(nameOf('metadata.name=a\\,b')).to.equal('a,b');
    });
    it('drops a name that is not a valid path segment name', () => {
      expect(nameOf('metadata.name=a%b')).to.equal('');
    });
    for (const [selector, message] of [
      ['metadata.name=a,b', "cannot understand 'b'"],
      ['metadata.name===a', "unescaped '='"],
      ['metadata.name=a\\x', "invalid escape sequence '\\x'"],
      ['metadata.name=a\\', "invalid escape sequence '\\'"],
    ] as const) {
      it(`refuses '${selector}', which the server cannot parse`, () => {
        expect(() => nameOf(selector)).to.throw(RequestInfoError, message);
      });
    }
    it('refuses a list whose limit is not an integer', () => {
      expect(() => requestInfo('GET', '/api/v1/pods?limit=ten')).to.throw(RequestInfoError, "query parameter limit='ten' is not an integer");
    });
  });

  it('parses the "METHOD /path?query" form of policy explain', () => {
    expect(parseKubeRequestLine('delete /api/v1/namespaces/payments/secrets/keys').verb).to.equal('delete');
    expect(() => parseKubeRequestLine('/api/v1/pods')).to.throw(RequestInfoError, 'expected "METHOD /path?query", got \'/api/v1/pods\'');
  });

  describe('impersonation', () => {
    it('turns each impersonated attribute into an impersonate request', () => {
      const h = readImpersonationHeaders({
        'impersonate-user': 'system:serviceaccount:payments:admin',
        'impersonate-group': ['system:masters', 'sre'],
        'impersonate-uid': '1234',
        'impersonate-extra-scopes': ['view', 'edit'],
        'impersonate-extra-acme.com%2fproject': 'p1',
        accept: 'application/json',
      });
      const base = { protocol: 'kubernetes', verb: 'impersonate', apiVersion: '', nonResource: false, path: '' };
      expect(impersonationRequests(h!)).to.deep.equal([
        { ...base, apiGroup: '', namespace: 'payments', resource: 'serviceaccounts', subresource: '', name: 'admin' },
        { ...base, apiGroup: '', namespace: '', resource: 'groups', subresource: '', name: 'system:masters' },
        { ...base, apiGroup: '', namespace: '', resource: 'groups', subresource: '', name: 'sre' },
        { ...base, apiGroup: 'authentication.k8s.io', namespace: '', resource: 'uids', subresource: '', name: '1234' },
        { ...base, apiGroup: 'authentication.k8s.io', namespace: '', resource: 'userextras', subresource: 'scopes', name: 'view' },
        { ...base, apiGroup: 'authentication.k8s.io', namespace: '', resource: 'userextras', subresource: 'scopes', name: 'edit' },
        { ...base, apiGroup: 'authentication.k8s.io', namespace: '', resource: 'userextras', subresource: 'acme.com/project', name: 'p1' },
      ]);
    });

    it('classifies a plain user as users', () => {
      const r = impersonationRequests(readImpersonationHeaders({ 'impersonate-user': 'alice' })!);
      expect(r.map((x) => [x.resource, x.name])).to.deep.equal([['users', 'alice']]);
    });

    it('returns undefined when there are no impersonation headers', () => {
      expect(readImpersonationHeaders({ authorization: 'Bearer x', accept: '*/*' })).to.equal(undefined);
    });

    it('refuses groups without a user, as the server does', () => {
      const h = readImpersonationHeaders({ 'impersonate-group': 'system:masters' })!;
      expect(() => impersonationRequests(h)).to.throw(RequestInfoError, 'impersonating groups, a uid or extra fields requires Impersonate-User as well');
    });

    it('refuses an unknown Impersonate- header', () => {
      expect(() => readImpersonationHeaders({ 'impersonate-role': 'x' })).to.throw(RequestInfoError, "unknown impersonation header 'impersonate-role'");
    });
  });
});
