import type { FastifyError, FastifySchemaValidationError } from 'fastify';
import { AdaggError, ErrorCode } from '../errors.ts';
import { PATTERN_HINTS } from './schemas.ts';

/** Which part of the request failed: 'querystring', 'params', 'body' or 'headers'. */
type SchemaErrorDataVar = NonNullable<FastifyError['validationContext']>;

/** Keywords whose error only wraps a more specific one reported before it. */
const WRAPPERS = new Set(['if', 'propertyNames', 'allOf']);

const ARTICLE: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  integer: 'a whole number',
  object: 'an object',
  array: 'an array',
  boolean: 'true or false',
  null: 'null',
};

/** The property name a `propertyNames` subschema refused (Ajv puts it on the error itself). */
function refusedName(e: FastifySchemaValidationError): string | undefined {
  const name = (e as { propertyName?: unknown }).propertyName ?? e.params.propertyName;
  return typeof name === 'string' ? name : undefined;
}

/** `/filter/user_id` → `filter.user_id`, plus the property an error names (a missing one, say). */
function fieldName(e: FastifySchemaValidationError): string {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const prop = e.params.missingProperty ?? refusedName(e) ?? e.params.additionalProperty;
  if (typeof prop === 'string') path.push(prop);
  return path.join('.');
}

function phrase(e: FastifySchemaValidationError, all: readonly FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): string {
  const p = e.params;
  switch (e.keyword) {
    case 'required':
      return 'is required';
    case 'type':
      // A query-string value is a string unless the parameter was repeated.
      if (dataVar === 'querystring') return 'given more than once';
      return `must be ${ARTICLE[String(p.type)] ?? String(p.type)}`;
    case 'anyOf': {
      // Every alternative failed on its type (else that alternative's own error comes first).
      const types = all.filter((x) => x.keyword === 'type' && x.instancePath === e.instancePath).map((x) => ARTICLE[String(x.params.type)] ?? String(x.params.type));
      return types.length > 0 ? `must be ${types.join(' or ')}` : 'has the wrong form';
    }
    case 'pattern':
      return PATTERN_HINTS.get(String(p.pattern)) ?? `must match ${String(p.pattern)}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `must be at most ${String(p.limit)} characters`;
    case 'minimum':
    case 'maximum':
      return `must be ${e.keyword === 'minimum' ? 'at least' : 'at most'} ${String(p.limit)}`;
    case 'maxProperties':
      return `has more than ${String(p.limit)} attributes`;
    case 'enum':
    case 'const': {
      const allowed = (Array.isArray(p.allowedValues) ? p.allowedValues : [p.allowedValue]).map(String);
      // Under propertyNames the name itself is what failed: it is not a field of this request.
      if (refusedName(e) !== undefined) return `is not a field of this request (fields: ${allowed.join(', ')})`;
      return `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    case 'not':
      return refusedName(e) !== undefined ? 'is not allowed here' : 'has a value that is not allowed here';
    default:
      return e.message ?? 'is not valid';
  }
}

/**
 * Turns fastify's schema validation errors into an ADAGG_E_BAD_PARAM naming the parameter (query
 * string, path) or field (body), in the same words as the gateway's own checks:
 * `parameter count: is not a whole number`, `field filter.user_id: must not be empty`.
 * Installed by the adaggHttp plugin (`setSchemaErrorFormatter`).
 */
export function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): AdaggError {
  // With allErrors off, Ajv reports the innermost failure first; wrappers (`if`, `propertyNames`)
  // follow it. Among alternatives (`anyOf`), one that failed on more than its type is the message.
  const anyOf = errors.find((e) => e.keyword === 'anyOf');
  const specific = errors.find((e) => !WRAPPERS.has(e.keyword) && e.keyword !== 'anyOf' && !(anyOf && e.keyword === 'type' && e.instancePath === anyOf.instancePath));
  const e = specific ?? anyOf ?? errors[0];
  if (e === undefined) return new AdaggError(ErrorCode.BadParam, `${dataVar} is not valid`, { details: { param: dataVar } });
  const name = fieldName(e);
  if (dataVar === 'body' && name === '') {
    return new AdaggError(ErrorCode.BadParam, e.keyword === 'type' ? 'body must be a JSON object' : `body ${phrase(e, errors, dataVar)}`, { details: { param: 'body' } });
  }
  const what = dataVar === 'body' ? 'field' : 'parameter';
  return new AdaggError(ErrorCode.BadParam, `${what} ${name}: ${phrase(e, errors, dataVar)}`, { details: { param: name } });
}
