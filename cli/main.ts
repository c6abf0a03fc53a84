#!/usr/bin/env node
// The one `agentgate` binary. Commands live with their component and are loaded
// lazily, so `agentgate mask` does not pay for the Kubernetes client.

import { UsageError } from '../core/cli/command.js';
import type { Command } from '../core/cli/command.js';
import { VERSION } from '../core/version.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  sidecar: { summary: 'run the proxy sidecar (Kubernetes API and PostgreSQL)', load: () => import('../sidecar/command.js') },
  injector: { summary: 'run the mutating admission webhook', load: () => import('../injector/webhook-command.js') },
  inject: { summary: 'inject the sidecar into manifests offline', load: () => import('../injector/inject-command.js') },
  approval: { summary: 'run the approval service', load: () => import('../approval/server-command.js') },
  approvals: { summary: 'list, show, approve and deny approval requests', load: () => import('../approval/approvers-command.js') },
  policy: { summary: 'check a policy file or explain a decision', load: () => import('../core/policy/command.js') },
  mask: { summary: 'mask card data (PANs, CVV, track data) from stdin to stdout', load: () => import('../core/mask/command.js') },
  audit: { summary: 'verify the hash chain and signed checkpoints of audit logs', load: () => import('../core/audit/command.js') },
};

function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`);
  return [
    `agentgate ${VERSION}: an enforcement point for AI agents on Kubernetes and PostgreSQL`,
    '',
    'Usage: agentgate <command> [flags]',
    '',
    'Commands:',
    ...lines,
    `  ${'version'.padEnd(width)}  print the version`,
    '',
    'Run `agentgate <command> --help` for a command\'s flags.',
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === 'version' || name === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`agentgate: unknown command '${name}' (see agentgate --help)\n`);
    return 2;
  }
  const { command } = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`agentgate ${name}: ${err.message} (see agentgate ${name} --help)\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`agentgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
