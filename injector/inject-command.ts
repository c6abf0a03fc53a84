// `agentgate inject -f FILE|-`: offline injection, like `linkerd inject`.

import { readFile } from 'node:fs/promises';
import type { Command } from '../core/cli/command.js';
import { parseFlags, readStdin, UsageError } from '../core/cli/command.js';
import { ConfigError, DEFAULT_CONFIG, loadInjectorConfig } from './config.js';
import { injectManifests } from './manifests.js';
import { policyParamsYaml } from './policy-params.js';

const USAGE = `Usage: agentgate inject -f FILE|- [--config FILE] [-n NAMESPACE]
       agentgate inject --policy-params [--config FILE]

Injects the agentgate proxy into the pods and pod templates of Kubernetes manifests
(YAML or JSON, several documents, List) and writes YAML to stdout. Pod, Deployment,
StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job and CronJob are
injected as in a namespace labeled agentgate.dev/inject=enabled: a pod labeled
agentgate.dev/inject=disabled passes through only when the config's optOut lists its
namespace or service account, and is refused otherwise; other objects pass through.
The output is what the cluster would run: the kube-api-access volume the API server
adds is added first. On any error nothing is written to stdout and the exit code is 1.

  -f, --filename FILE  manifest file, or - for stdin
  --config FILE        injector config (YAML), as given to \`agentgate injector\`
  -n, --namespace NS   namespace of objects that name none (judges opt-outs)
  --policy-params      print the ConfigMap agentgate-system/agentgate-injector-policy that
                       injector/validatingadmissionpolicy.yaml reads: the config's
                       allowedSecrets and optOut, so the backstop checks what the webhook does
`;

export const command: Command = {
  name: 'inject',
  summary: 'inject the sidecar into manifests offline',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      filename: { type: 'string', short: 'f' },
      config: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'policy-params': { type: 'boolean' },
    });
    if (!values.filename && !values['policy-params']) throw new UsageError('missing -f FILE (or -f - for stdin)');
    let cfg = DEFAULT_CONFIG;
    if (values.config) {
      try {
        cfg = await loadInjectorConfig(values.config);
      } catch (err) {
        process.stderr.write(`agentgate inject: ${err instanceof ConfigError ? `invalid config:\n${err.message}` : (err as Error).message}\n`);
        return 1;
      }
    }
    if (values['policy-params']) {
      process.stdout.write(policyParamsYaml(cfg));
      return 0;
    }
    let text: string;
    if (!values.filename) throw new UsageError('missing -f FILE (or -f - for stdin)');
    const file = values.filename === '-' ? '<stdin>' : values.filename;
    try {
      text = values.filename === '-' ? (await readStdin()).toString('utf8') : await readFile(values.filename, 'utf8');
    } catch (err) {
      process.stderr.write(`agentgate inject: ${(err as Error).message}\n`);
      return 1;
    }
    const out = injectManifests(text, file, cfg, { namespace: values.namespace });
    for (const w of out.warnings) process.stderr.write(`agentgate inject: warning: ${w}\n`);
    if (out.errors.length) {
      for (const e of out.errors) process.stderr.write(`agentgate inject: ${e}\n`);
      return 1;
    }
    process.stdout.write(out.yaml);
    return 0;
  },
};
