// Placeholder until its issue lands: the command exists so the CLI and help are complete.
import type { Command } from '../core/cli/command.js';

export const command: Command = {
  name: 'injector',
  summary: 'injector',
  usage: 'Usage: agentgate injector (not available in this build yet)',
  async run() {
    process.stderr.write('agentgate injector: not available in this build yet\n');
    return 1;
  },
};
