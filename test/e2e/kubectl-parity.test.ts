// Everyday kubectl, straight to the REAL kube-apiserver v1.20.2 and through the sidecar, compared.
// The same command sequence runs twice, each in a namespace of its own: once with the admin
// kubeconfig, once through the proxy (in-process, forwarding with the same admin token, under a
// policy that allows everything). After names, uids, resourceVersions and timestamps are
// normalised, exit code, stdout and stderr must be equal; the only difference allowed is a masked
// value (the card number, plain or base64, is replaced by its masked form in the straight output).

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sharedKubeCluster, stopSharedKubeCluster, type KubeCluster } from '../support/kube-cluster.js';
import { KUBECTL_NEW, KUBECTL_OLD, PAN, PAN_MASKED, startHarness } from '../sidecar/kubernetes/harness.js';
import type { Harness } from '../sidecar/kubernetes/harness.js';
import type { KubeApiDouble } from '../support/kube-api-double.js';

after(stopSharedKubeCluster);

const POLICY = `
apiVersion: agentgate.dev/v1
kind: Policy
metadata: { name: parity }
spec:
  default: allow
  masking: { pan: last4, secrets: mask }
  rules:
    - name: allow-impersonation-checks
      kubernetes: { verbs: [impersonate], resources: [users] }
      action: allow
`;

/** The commands, `NS` standing for the namespace and `DIR` for the manifests' directory. */
const COMMANDS: string[][] = [
  // One key: kubectl describe prints a ConfigMap's keys in Go map order.
  ['create', 'configmap', 'cards', `--from-literal=note=card ${PAN} on file`],
  ['get', 'configmap', 'cards', '-o', 'json'],
  ['get', 'configmap', 'cards', '-o', 'yaml'],
  ['get', 'configmap', 'cards', '-o', 'name'],
  ['get', 'configmap', 'cards', '-o', 'wide'],
  ['get', 'configmap', 'cards', '-o', 'jsonpath={.data.note}'],
  ['get', 'configmap', 'cards', '-o', 'custom-columns=NAME:.metadata.name,NOTE:.data.note'],
  ['get', 'configmaps', '--show-labels'],
  ['describe', 'configmap', 'cards'],
  ['apply', '-f', 'DIR/app.json'],
  ['apply', '-f', 'DIR/app.json'],
  ['diff', '-f', 'DIR/app2.json'],
  ['apply', '--server-side', '--force-conflicts', '-f', 'DIR/app2.json'],
  ['patch', 'configmap', 'app', '--type=merge', '-p', '{"data":{"k":"patched"}}'],
  ['label', 'configmap', 'app', 'tier=web'],
  ['annotate', 'configmap', 'app', 'note=hello'],
  ['get', 'configmap', 'app', '-o', 'yaml'],
  ['create', 'secret', 'generic', 'card-vault', `--from-literal=pan=${PAN}`, '--from-literal=user=svc'],
  ['get', 'secret', 'card-vault', '-o', 'jsonpath={.data}'],
  ['create', 'deployment', 'web', '--image=nginx', '--dry-run=server', '-o', 'yaml'],
  ['create', 'deployment', 'web', '--image=nginx'],
  ['scale', 'deployment', 'web', '--replicas=2'],
  ['get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}'],
  ['rollout', 'status', 'deployment/web', '--timeout=1s'],
  ['wait', '--for=condition=Available', 'deployment/web', '--timeout=1s'],
  ['auth', 'can-i', 'create', 'configmaps'],
  ['auth', 'can-i', 'delete', 'pods', '--as=someone'],
  ['explain', 'configmap.data'],
  ['logs', 'deployment/web', '--pod-running-timeout=1s'],
  ['exec', 'deployment/web', '--pod-running-timeout=1s', '--', 'true'],
  ['get', 'configmap', 'missing'],
  ['delete', 'configmap', 'app'],
  ['delete', 'deployment', 'web'],
  ['get', 'configmaps', '-o', 'name'],
];

interface Run { code: number; stdout: string; stderr: string }

function normalise(text: string, ns: string): string {
  return text
    .split(ns).join('NS')
    .replace(/\/tmp\/(LIVE|MERGED)-\d+/g, '/tmp/$1')
    .replace(/\s\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [+-]\d{4}/g, ' DIFFTIME')
    .replace(/\bweb-[0-9a-f]{8,10}-[a-z0-9]{5}\b/g, 'web-POD')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'UID')
    .replace(/("?resourceVersion"?:\s*)"\d+"/g, '$1"RV"')
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, 'TIME')
    .replace(/\b\d+(\.\d+)?(s|m|ms)\b/g, 'DUR')
    .replace(/ +/g, ' ');
}

/** The straight output as the sidecar would show it: the card number masked, plain and base64. */
const masked = (text: string) => text.split(PAN).join(PAN_MASKED).split(Buffer.from(PAN).toString('base64')).join(Buffer.from(PAN_MASKED).toString('base64'));

for (const bin of [KUBECTL_NEW, KUBECTL_OLD]) {
  describe(`everyday ${path.basename(bin)} straight and through the sidecar (REAL kube-apiserver v1.20.2)`, function () {
    this.timeout(600_000);
    let cluster: KubeCluster;
    let h: Harness;
    const tag = path.basename(bin).replace(/\./g, '-');
    const nsDirect = `parity-direct-${tag}`;
    const nsProxy = `parity-proxy-${tag}`;

    before(async function () {
      this.timeout(60 * 60_000);
      cluster = await sharedKubeCluster();
      await cluster.createNamespace(nsDirect);
      await cluster.createNamespace(nsProxy);
      h = await startHarness({ policy: POLICY, double: { url: cluster.server, token: cluster.adminToken, caPem: cluster.caPem } as unknown as KubeApiDouble });
    });
    after(async () => h?.stop());

    function kubectl(kubeconfig: string, ns: string, dir: string, args: string[]): Promise<Run> {
      return new Promise((resolve) => {
        execFile(bin, ['-n', ns, ...args.map((a) => a.replace(/^DIR\//, `${dir}/`))],
          { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(dir, `cache-${ns}`) }, timeout: 60_000 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
      });
    }

    it('behaves the same for every command, masked values aside', async () => {
      const manifests = async (ns: string) => {
        const dir = path.join(h.dir, ns);
        await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
        const cm = (k: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app', namespace: ns }, data: { k } });
        await writeFile(path.join(dir, 'app.json'), cm('one'));
        await writeFile(path.join(dir, 'app2.json'), cm('two'));
        return dir;
      };
      const dirDirect = await manifests(nsDirect);
      const dirProxy = await manifests(nsProxy);
      const differences: string[] = [];
      for (const args of COMMANDS) {
        const direct = await kubectl(cluster.kubeconfigPath, nsDirect, dirDirect, args);
        const proxied = await kubectl(h.kubeconfig, nsProxy, dirProxy, args);
        const a = { code: direct.code, stdout: normalise(masked(direct.stdout), nsDirect), stderr: normalise(masked(direct.stderr), nsDirect).split(dirDirect).join('DIR') };
        const b = { code: proxied.code, stdout: normalise(proxied.stdout, nsProxy), stderr: normalise(proxied.stderr, nsProxy).split(dirProxy).join('DIR') };
        if (JSON.stringify(a) !== JSON.stringify(b)) differences.push(`kubectl ${args.join(' ')}\n  straight: ${JSON.stringify(a)}\n  sidecar:  ${JSON.stringify(b)}`);
      }
      expect(differences.join('\n')).to.equal('');
    });
  });
}
