/**
 * Reading deploy/ and the Dockerfile for test/ops/deploy-config.test.ts: the files, their YAML
 * documents, the environment variables they name and the `adagg` invocations they contain.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const DEPLOY = path.join(ROOT, 'deploy');

/** Every file under `dir`, recursively (absolute paths, sorted). */
export function walk(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = path.join(dir, name);
      return statSync(p).isDirectory() ? walk(p) : [p];
    });
}

/** A path relative to the repository root, for messages. */
export const rel = (file: string): string => path.relative(ROOT, file);

/** The YAML documents of a file (merge keys `<<` on, as compose reads them); a syntax error throws. */
export function yamlDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, 'utf8'), { merge: true }).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${rel(file)}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as unknown;
  });
}

/** Every `ADAGG_*`, `NATS_*` and `REDIS_*` word of a text. */
export function envNames(text: string): string[] {
  return [...text.matchAll(/\b(?:ADAGG|NATS|REDIS)_[A-Z0-9_]*[A-Z0-9]\b/g)].map((m) => m[0]);
}

/** One `adagg` command line found in a file: argv[0] is the command. */
export interface Invocation {
  where: string;
  argv: string[];
}

const SHELL_STOP = /^(?:\||\|\||&|&&|;|#.*|\\|>.*|2>.*)$/;

/** Words of a command line up to a shell operator or comment, without quotes. */
export function words(line: string): string[] {
  const out: string[] = [];
  for (const w of line.trim().split(/\s+/)) {
    if (w === '' || SHELL_STOP.test(w)) break;
    out.push(w.replace(/^["']|["';]$/g, ''));
    if (w.endsWith(';')) break;
  }
  return out;
}

/**
 * What follows `adagg` in a shell line: `adagg CMD`, `npx adagg CMD`, `node …dist/cli/main.js CMD`,
 * `docker run … adagg CMD`, `docker compose … exec SERVICE adagg CMD`, `kubectl … exec … -- adagg CMD`.
 */
const SHELL_FORMS: readonly RegExp[] = [
  /^(?:\$ )?(?:[A-Z_]+=\S* )*(?:npx )?adagg (.+)$/,
  /\bnode (?:\S*\/)?dist\/cli\/main\.js (.+)$/,
  /\bdocker run (?:.*? )?adagg(?::\S+)? (.+)$/,
  /\bexec (?:-\S+ )*[\w.-]+ adagg (.+)$/,
  /\bkubectl .*? -- adagg (.+)$/,
];

/** Invocations in one line of shell (a code block line, an inline code span, a comment). */
export function shellInvocations(line: string, where: string, wholeLine: boolean): Invocation[] {
  const forms = wholeLine ? SHELL_FORMS : SHELL_FORMS.slice(1);
  for (const re of forms) {
    const m = re.exec(line.trim());
    if (m?.[1] !== undefined) return [{ where, argv: words(m[1]) }];
  }
  return [];
}

/** Inline code spans of a line of prose or a comment. */
const spans = (line: string): string[] => [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** Invocations in a markdown file: fenced code lines, and inline code spans of the prose. */
export function markdownInvocations(file: string): Invocation[] {
  const out: Invocation[] = [];
  let fenced = false;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const where = `${rel(file)}:${i + 1}`;
      if (line.trimStart().startsWith('```')) fenced = !fenced;
      else if (fenced) out.push(...shellInvocations(line, where, true));
      else for (const s of spans(line)) out.push(...shellInvocations(s, where, true));
    });
  return out;
}

/**
 * Invocations in the comments of a YAML, config, unit or Dockerfile (`#` lines): inline code spans
 * as shell lines, the rest only in the unambiguous forms (prose says "adagg node" without meaning a
 * command line).
 */
export function commentInvocations(file: string): Invocation[] {
  const out: Invocation[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const at = line.indexOf('#');
      if (at < 0 || (at > 0 && /\S/.test(line.slice(0, at)) && !/\s$/.test(line.slice(0, at)))) return;
      const comment = line.slice(at + 1);
      const where = `${rel(file)}:${i + 1}`;
      for (const s of spans(comment)) out.push(...shellInvocations(s, where, true));
      out.push(...shellInvocations(comment.replace(/`[^`]*`/g, ''), where, false));
    });
  return out;
}

/** A Dockerfile as stages: each FROM line with the instructions under it (continuations joined). */
export interface DockerStage {
  from: string;
  name: string | undefined;
  instructions: Array<{ op: string; args: string }>;
}

export function dockerStages(file: string): DockerStage[] {
  const lines = readFileSync(file, 'utf8').replace(/\\\n/g, ' ').split('\n');
  const stages: DockerStage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: m?.[1] ?? args, name: m?.[2], instructions: [] });
    } else stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

/** A systemd unit's `Key=value` lines (comments dropped), in order. */
export function unitEntries(file: string): Array<[key: string, value: string]> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('[') && l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

/** `KEY=value` lines of an environment file (systemd EnvironmentFile), comments dropped. */
export function envFile(file: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1]!, m[2]!]),
  );
}
