// The policy document as written in YAML (`apiVersion: agentgate.dev/v1`, `kind: Policy`):
// its shape for core/yaml/validate.ts, and the plain types it loads into. Checks that
// a shape cannot express (globs, duplicate names, combinations) live in load.ts.

import type { Schema } from '../yaml/validate.js';
import { KUBE_VERBS, STATEMENT_KINDS, STATEMENT_QUALIFIERS } from './types.js';
import type { Action, ApprovalMode, ApprovalScope } from './types.js';

export const API_VERSION = 'agentgate.dev/v1';

export interface KubernetesMatchDoc {
  verbs?: string[];
  apiGroups?: string[];
  resources?: string[];
  namespaces?: string[];
  names?: string[];
  nonResourceURLs?: string[];
}

export interface PostgresMatchDoc {
  connections?: string[];
  statements?: string[];
  tables?: string[];
  functions?: string[];
}

export interface ApprovalDoc {
  mode?: ApprovalMode;
  scope?: ApprovalScope;
  waitSeconds?: number;
  windowMinutes?: number;
  approverGroups?: string[];
  minApprovals?: number;
}

export interface RuleDoc {
  name: string;
  description?: string;
  subjects?: string[];
  groups?: string[];
  kubernetes?: KubernetesMatchDoc;
  postgres?: PostgresMatchDoc;
  action: Action;
  approval?: ApprovalDoc;
}

export interface PolicyDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    default?: 'allow' | 'deny';
    enforcement?: 'enforce' | 'observe';
    masking?: { pan?: 'last4' | 'bin+last4'; fields?: string[]; columns?: string[]; secrets?: 'mask' | 'redact' };
    rules: RuleDoc[];
  };
}

const str: Schema = { kind: 'string', nonEmpty: true };
const strList: Schema = { kind: 'array', items: str, minItems: 1 };
const enumList = (values: readonly string[]): Schema => ({ kind: 'array', items: { kind: 'string', enum: values }, minItems: 1 });

export const STATEMENT_NAMES: readonly string[] = [...STATEMENT_KINDS, ...STATEMENT_QUALIFIERS];
export const VERB_NAMES: readonly string[] = [...KUBE_VERBS, '*'];

export const RULE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._:-]*[A-Za-z0-9])?$/;

const ruleSchema: Schema = {
  kind: 'object',
  name: 'rule',
  fields: {
    name: { required: true, schema: { kind: 'string', nonEmpty: true, pattern: RULE_NAME, patternHint: 'letters, digits, ".", "_", ":" and "-", starting and ending with a letter or digit' } },
    description: { schema: str },
    subjects: { schema: strList },
    groups: { schema: strList },
    kubernetes: {
      schema: {
        kind: 'object',
        fields: {
          verbs: { schema: enumList(VERB_NAMES) },
          apiGroups: { schema: { kind: 'array', items: { kind: 'string' }, minItems: 1 } },
          resources: { schema: strList },
          namespaces: { schema: strList },
          names: { schema: strList },
          nonResourceURLs: { schema: strList },
        },
      },
    },
    postgres: {
      schema: {
        kind: 'object',
        fields: {
          connections: { schema: strList },
          statements: { schema: enumList(STATEMENT_NAMES) },
          tables: { schema: strList },
          functions: { schema: strList },
        },
      },
    },
    action: { required: true, schema: { kind: 'string', enum: ['allow', 'deny', 'approve'] } },
    approval: {
      schema: {
        kind: 'object',
        fields: {
          mode: { schema: { kind: 'string', enum: ['wait', 'defer'] } },
          scope: { schema: { kind: 'string', enum: ['once', 'window'] } },
          waitSeconds: { schema: { kind: 'number', integer: true, min: 1, max: 3600 } },
          windowMinutes: { schema: { kind: 'number', integer: true, min: 1, max: 1440 } },
          approverGroups: { schema: strList },
          minApprovals: { schema: { kind: 'number', integer: true, min: 1, max: 10 } },
        },
      },
    },
  },
};

export const policySchema: Schema = {
  kind: 'object',
  fields: {
    apiVersion: { required: true, schema: { kind: 'string', enum: [API_VERSION] } },
    kind: { required: true, schema: { kind: 'string', enum: ['Policy'] } },
    metadata: {
      required: true,
      schema: {
        kind: 'object',
        fields: {
          name: { required: true, schema: { kind: 'string', nonEmpty: true, pattern: RULE_NAME, patternHint: 'letters, digits, ".", "_", ":" and "-"' } },
          labels: { schema: { kind: 'map', values: { kind: 'string' } } },
          annotations: { schema: { kind: 'map', values: { kind: 'string' } } },
        },
      },
    },
    spec: {
      required: true,
      schema: {
        kind: 'object',
        fields: {
          default: { schema: { kind: 'string', enum: ['deny', 'allow'] } },
          enforcement: { schema: { kind: 'string', enum: ['enforce', 'observe'] } },
          masking: {
            schema: {
              kind: 'object',
              fields: {
                pan: { schema: { kind: 'string', enum: ['last4', 'bin+last4'] } },
                fields: { schema: strList },
                columns: { schema: strList },
                secrets: { schema: { kind: 'string', enum: ['mask', 'redact'] } },
              },
            },
          },
          rules: { required: true, schema: { kind: 'array', items: ruleSchema, minItems: 1 } },
        },
      },
    },
  },
};
