// What the proxies and commands use of the policy engine.
export type { Action, Decision, KubeRequest, PgRequest, Policy, PolicyRequest, PolicySource, MaskingSpec, ApprovalSpec } from './types.js';
export { FilePolicySource } from './source.js';
export type { FilePolicySourceOptions, ReloadListener } from './source.js';
export { parsePolicy, loadPolicyFile, builtinPolicy, StaticPolicySource } from './load.js';
export type { LoadResult } from './load.js';
export { CompiledPolicy, FailClosedPolicy, combineDecisions, describeRequest, DEFAULT_MASKING } from './engine.js';
export { BUILTIN_RULES, DANGEROUS_FUNCTIONS } from './builtin.js';
