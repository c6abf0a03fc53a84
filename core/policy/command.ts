// Placeholder until its issue lands: the command exists so the CLI and help are complete.
import type { Command } from '../cli/command.js';

export const command: Command = {
  name: 'policy',
  summary: 'policy',
  usage: 'Usage: agentgate policy (not available in this build yet)',
  async run() {
    process.stderr.write('agentgate policy: not available in this build yet\n');
    return 1;
  },
};
