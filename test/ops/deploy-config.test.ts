/**
 * Issue 13, "deployment beyond one machine": the files in deploy/ and the Dockerfile agree with the
 * code. Every environment variable they set is an option (or a documented process variable), every
 * `adagg` command line they run exists with its flags, the image and the units run as non-root,
 * the probes and health checks they declare get 200 from the real servers, and the Kubernetes
 * manifests hold together. No docker or cluster needed (test/ops/deploy-servers.test.ts runs the
 * server configs and units through nats-server, redis-server and systemd-analyze).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROCESS_ENV_VARS } from '../../scripts/docs-options.ts';
import { ErrorCode } from '../../src/errors.ts';
import { PUBLIC, requiredScope } from '../../src/gateway/auth/route-scopes.ts';
import { compileOptions, ENV_VARS, optionsFromEnv } from '../../src/options.ts';
import { freePort } from '../../src/runtime/local-servers.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { MetricsServer } from '../../src/runtime/metrics-server.ts';
import { offlineGateway } from '../helpers/offline-gateway.ts';
import * as f from './deploy-files.ts';
import { adaggContainers, checkDisruptionBudgets, checkReferences, checkShapes, type Container, type K8sObject } from './k8s-checks.ts';

const run = promisify(execFile);
const DOCKERFILE = path.join(f.ROOT, 'Dockerfile');
const COMPOSE = path.join(f.DEPLOY, 'compose.yaml');
const K8S = path.join(f.DEPLOY, 'k8s');
const SYSTEMD = path.join(f.DEPLOY, 'systemd');
const FILES = [...f.walk(f.DEPLOY), DOCKERFILE, path.join(f.ROOT, '.dockerignore')];

type ComposeService = { image?: string; build?: unknown; command?: string[] | string; environment?: Record<string, string>; depends_on?: Record<string, unknown> | string[]; volumes?: string[]; secrets?: string[]; healthcheck?: { test?: string[] } };
const compose = f.yamlDocs(COMPOSE)[0] as { services: Record<string, ComposeService>; volumes?: Record<string, unknown>; secrets?: Record<string, { file: string }> };
const adaggServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined || /^adagg(:|$)/.test(s.image ?? ''));
const k8sFiles = f.walk(K8S).filter((p) => p.endsWith('.yaml') && path.basename(p) !== 'kustomization.yaml');
const k8s = k8sFiles.flatMap((p) => f.yamlDocs(p)) as K8sObject[];
const stages = f.dockerStages(DOCKERFILE);
const finalStage = stages.at(-1)!;
const dockerArg = (op: string): string | undefined => finalStage.instructions.findLast((i) => i.op === op)?.args;
const units = f.walk(SYSTEMD).filter((p) => p.endsWith('.service'));
const unitValue = (unit: string, key: string): string[] => f.unitEntries(unit).filter(([k]) => k === key).map(([, v]) => v);
const argvOf = (c: string[] | string | undefined): string[] => (typeof c === 'string' ? f.words(c) : (c ?? []));
const imageCmd = (): string[] => JSON.parse(dockerArg('CMD') ?? '[]') as string[];

/** Whether one engines range (`^20.19.0`, `~22.1`, `>=24`) admits the newest release of a Node major. */
function allowsMajor(range: string, major: number): boolean {
  const caret = /^[\^~]?(\d+)\./.exec(range);
  if (caret) return Number(caret[1]) === major;
  const atLeast = /^>=\s*(\d+)/.exec(range);
  return atLeast !== null && Number(atLeast[1]) <= major;
}

/** Every `adagg` command line of deploy/ and the Dockerfile, from the structured fields and the text. */
function invocations(): f.Invocation[] {
  const out: f.Invocation[] = [{ where: 'Dockerfile CMD', argv: imageCmd() }];
  for (const [name, s] of adaggServices) out.push({ where: `compose ${name}`, argv: s.command === undefined ? imageCmd() : argvOf(s.command) });
  for (const { workload, container } of adaggContainers(k8s)) out.push({ where: `k8s ${workload.metadata?.name}`, argv: container.args ?? [] });
  for (const unit of units) {
    for (const exec of unitValue(unit, 'ExecStart')) {
      const w = f.words(exec);
      const at = w.findIndex((x) => x.endsWith('dist/cli/main.js') || x.endsWith('/adagg') || x.endsWith('bin/adagg.mjs'));
      out.push({ where: `${f.rel(unit)} ExecStart`, argv: at < 0 ? [`(no adagg in: ${exec})`] : w.slice(at + 1) });
    }
  }
  for (const file of FILES) out.push(...(file.endsWith('.md') ? f.markdownInvocations(file) : f.commentInvocations(file)));
  return out;
}

/** `adagg CMD --help` as the CLI runs from the sources: exit code and text. */
async function help(cmd: string): Promise<{ code: number; text: string }> {
  const main = path.join(f.ROOT, 'src/cli/main.ts');
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', main, cmd, '--help'], { cwd: f.ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
    return { code: 0, text: stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, text: e.stdout ?? '' };
  }
}

/** Runs a health check command (exec form, `node -e …`) with extra environment; its exit code. */
async function healthCheck(argv: string[], env: Record<string, string>): Promise<number> {
  const [cmd, ...args] = argv[0] === 'CMD' ? argv.slice(1) : argv;
  expect(cmd).toBe('node');
  try {
    await run(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: '', ...env }, timeout: 30_000 });
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

describe('deploy/ and the Dockerfile agree with the code', () => {
  it('names only environment variables that exist: options, process variables, error codes', () => {
    const known = new Set([...Object.keys(ENV_VARS), ...PROCESS_ENV_VARS.map((v) => v.env)]);
    const codes = new Set<string>(Object.values(ErrorCode));
    const unknown = FILES.flatMap((file) =>
      f.envNames(readFileSync(file, 'utf8'))
        .filter((name) => (name.startsWith('ADAGG_E_') ? !codes.has(name) : !known.has(name)))
        .map((name) => `${f.rel(file)}: ${name}`),
    );
    expect([...new Set(unknown)]).toEqual([]);
  });

  it('sets option values that compile (compose services, Kubernetes containers, the systemd env file)', () => {
    const envs: Array<[string, Record<string, string>]> = adaggServices.map(([name, s]) => [`compose ${name}`, s.environment ?? {}]);
    const configMaps = new Map(k8s.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata?.name, o.data ?? {}]));
    for (const { workload, container } of adaggContainers(k8s)) {
      const fromMaps = Object.assign({}, ...(container.envFrom ?? []).map((e) => configMaps.get(e.configMapRef?.name) ?? {})) as Record<string, string>;
      const literal = Object.fromEntries((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
      envs.push([`k8s ${workload.metadata?.name}`, { ...fromMaps, ...literal }]);
    }
    envs.push(['systemd adagg.env', f.envFile(path.join(SYSTEMD, 'adagg.env'))]);
    for (const [where, env] of envs) {
      expect(() => compileOptions(optionsFromEnv(env)), where).not.toThrow();
      expect(env.NATS_URL, `${where}: NATS_URL`).toBeTruthy();
      expect(env.REDIS_URL ?? env.REDIS_SENTINELS, `${where}: Redis`).toBeTruthy();
    }
  });

  it('runs only adagg commands and flags the CLI has', async () => {
    const all = invocations();
    const commands = [...new Set(all.map((i) => i.argv[0] ?? '(empty)'))];
    // The extraction works: the roles and a few operator commands are found.
    expect(commands).toEqual(expect.arrayContaining(['node', 'gateway', 'drain']));
    const helps = new Map(await Promise.all(commands.map(async (c) => [c, await help(c)] as const)));
    const problems = all.flatMap(({ where, argv: [cmd = '(empty)', ...rest] }) => {
      const h = helps.get(cmd)!;
      if (h.code !== 0) return [`${where}: adagg ${cmd}: not a command (--help exits ${h.code})`];
      return rest.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!).filter((flag) => !new RegExp(`(^|\\s)${flag}\\b`).test(h.text)).map((flag) => `${where}: adagg ${cmd} has no ${flag}`);
    });
    expect(problems).toEqual([]);
  }, 120_000);
});

describe('the Dockerfile', () => {
  it('builds in stages and runs dist/ as a non-root user with production dependencies only', () => {
    expect(stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    expect(finalStage.from).toMatch(/^node:.*slim$/);
    // The default Node major satisfies package.json's engines (npm ci prints no engine warning).
    const major = /^ARG NODE_VERSION=(\d+)$/m.exec(readFileSync(DOCKERFILE, 'utf8'))?.[1];
    const { engines } = JSON.parse(readFileSync(path.join(f.ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(engines.node.split('||').some((r) => allowsMajor(r.trim(), Number(major))), engines.node).toBe(true);
    const runs = (s: f.DockerStage) => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    expect(runs(stages[0]!)).toMatch(/npm ci[\s\S]*npm run build/);
    expect(runs(stages[1]!)).toMatch(/npm ci --omit=dev/);
    expect(runs(finalStage)).not.toMatch(/npm (ci|install)/);
    const copies = finalStage.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toEqual(expect.arrayContaining(['package.json ./', '--from=deps /app/node_modules ./node_modules', '--from=build /app/dist ./dist', 'bin/ ./bin/']));
    const user = dockerArg('USER') ?? 'root';
    expect(user.split(':')[0]).not.toMatch(/^(root|0)$/);
    // USER comes before the process starts: nothing after it switches back.
    expect(finalStage.instructions.findIndex((i) => i.op === 'USER')).toBeGreaterThan(finalStage.instructions.findLastIndex((i) => i.op === 'RUN'));
    expect(JSON.parse(dockerArg('ENTRYPOINT') ?? '[]')).toEqual(['node', 'dist/cli/main.js']);
    expect(dockerArg('HEALTHCHECK')).toContain('/healthz');
  });

  it('copies every input of `npm run build` into the build stage, none excluded by .dockerignore', () => {
    const pkg = JSON.parse(readFileSync(path.join(f.ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const tsconfig = JSON.parse(readFileSync(path.join(f.ROOT, 'tsconfig.build.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '')) as { extends?: string };
    const inputs = ['package-lock.json', 'src', ...(pkg.scripts.build!.match(/[\w./-]+\.(?:json|mjs)/g) ?? []), path.normalize(tsconfig.extends ?? '')];
    const copied = stages[0]!.instructions.filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1)).map((p) => p.replace(/\/$/, ''));
    expect(inputs.filter((p) => !copied.some((c) => c === p || c === path.dirname(p)))).toEqual([]);
    const ignored = readFileSync(path.join(f.ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const sources = stages.flatMap((s) => s.instructions).filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources.filter((src) => ignored.some((p) => src.replace(/\/$/, '') === p || src.startsWith(`${p}/`)))).toEqual([]);
  });

  it('has every package the compiled code imports among the production dependencies', () => {
    const pkg = JSON.parse(readFileSync(path.join(f.ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const missing = f.walk(path.join(f.ROOT, 'src')).filter((p) => /\.(ts|mjs)$/.test(p)).flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      const specs = [...text.matchAll(/^import\s+(?!type\s)[^'";]*?from\s+'([^']+)'/gm), ...text.matchAll(/^import\s+'([^']+)'/gm), ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!);
      return specs
        .filter((s) => !s.startsWith('.') && !s.startsWith('node:'))
        .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2) : s.split('/').slice(0, 1)).join('/'))
        // tsx is loaded only when the process runs the TypeScript sources (never from dist/).
        .filter((name) => name !== 'tsx' && pkg.dependencies[name] === undefined)
        .map((name) => `${f.rel(file)}: ${name}`);
    });
    expect(missing).toEqual([]);
  });
});

describe('health checks and probes get 200 from the real servers', () => {
  const gateway = offlineGateway();
  const metrics = new MetricsServer(new Registry(), { port: 0, host: '127.0.0.1' }, silentLogger);
  let gatewayPort = 0;
  let metricsPort = 0;

  beforeAll(async () => {
    await gateway.listen({ port: 0, host: '127.0.0.1' });
    gatewayPort = (gateway.server.address() as { port: number }).port;
    metricsPort = (await metrics.start()).port;
  });
  afterAll(async () => {
    await gateway.close();
    await metrics.close();
  });

  it("the image's HEALTHCHECK passes on a gateway and fails where none listens", async () => {
    const argv = JSON.parse((dockerArg('HEALTHCHECK') ?? '').replace(/^.*?CMD\s+/, '')) as string[];
    expect(await healthCheck(argv, { ADAGG_HTTP_PORT: String(gatewayPort) })).toBe(0);
    expect(await healthCheck(argv, { ADAGG_HTTP_PORT: String(await freePort()) })).not.toBe(0);
  }, 60_000);

  it("compose's node health check passes on a node's metrics server and fails where none listens", async () => {
    for (const [name, s] of adaggServices.filter(([, s]) => argvOf(s.command)[0] === 'node')) {
      expect(await healthCheck(s.healthcheck?.test ?? [], { ADAGG_METRICS_PORT: String(await freePort()) }), name).not.toBe(0);
      expect(await healthCheck(s.healthcheck?.test ?? [], { ADAGG_METRICS_PORT: String(metricsPort) }), name).toBe(0);
    }
  }, 60_000);

  it('the Kubernetes probes of gateways (no token) and nodes answer 200', async () => {
    const probes = (c: Container) => [c.livenessProbe, c.readinessProbe].map((p) => p?.httpGet?.path ?? '(no httpGet probe)');
    for (const { workload, container } of adaggContainers(k8s)) {
      const role = container.args?.[0];
      const paths = probes(container);
      if (role === 'gateway') {
        expect(paths, workload.metadata?.name).toEqual(['/healthz', '/readyz']);
        for (const p of paths) {
          expect(requiredScope('GET', p)).toBe(PUBLIC);
          expect((await gateway.inject({ method: 'GET', url: p })).statusCode, p).toBe(200);
        }
      } else {
        expect(role, workload.metadata?.name).toBe('node');
        for (const p of paths) expect((await fetch(`http://127.0.0.1:${metricsPort}${p}`)).status, `${workload.metadata?.name} ${p}`).toBe(200);
      }
    }
  });
});

describe('deploy/compose.yaml', () => {
  it('runs 3 NATS servers, Redis with a replica and 3 Sentinels, 3 nodes with stable ids, a gateway, Prometheus', () => {
    const s = compose.services;
    const names = Object.keys(s);
    expect(names.filter((n) => /^nats/.test(s[n]!.image ?? ''))).toHaveLength(3);
    expect(names.filter((n) => argvOf(s[n]!.command)[0] === 'redis-server')).toHaveLength(2);
    expect(names.filter((n) => (s[n]!.command ?? []).toString().includes('redis-sentinel'))).toHaveLength(3);
    const nodes = adaggServices.filter(([, x]) => argvOf(x.command)[0] === 'node').map(([, x]) => argvOf(x.command));
    expect(nodes).toHaveLength(3);
    const ids = nodes.map((a) => (a.indexOf('--id') > 0 ? a[a.indexOf('--id') + 1] : undefined));
    expect(ids.every((x) => x !== undefined && /^[A-Za-z0-9_-]+$/.test(x)), ids.join()).toBe(true);
    expect(new Set(ids).size).toBe(3);
    const gw = adaggServices.find(([, x]) => argvOf(x.command)[0] === 'gateway')?.[1];
    expect(gw?.environment).toMatchObject({ ADAGG_HTTP_HOST: '0.0.0.0', ADAGG_TOKENS_FILE: expect.stringMatching(/^\/run\/secrets\//) });
    expect(names.some((n) => /prometheus/.test(s[n]!.image ?? ''))).toBe(true);
  });

  it('refers only to services, volumes, secrets and files that exist', () => {
    const problems: string[] = [];
    const hostsOf = (list: string | undefined) => (list ?? '').split(',').filter(Boolean).map((u) => new URL(u.includes('://') ? u : `x://${u}`).hostname);
    for (const [name, s] of Object.entries(compose.services)) {
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) if (!compose.services[d]) problems.push(`${name}: depends_on ${d}`);
      for (const sec of s.secrets ?? []) if (!compose.secrets?.[sec]) problems.push(`${name}: secret ${sec}`);
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (src.startsWith('.')) {
          if (!existsSync(path.join(f.DEPLOY, src))) problems.push(`${name}: mounts missing ${src}`);
        } else if (!(src in (compose.volumes ?? {}))) problems.push(`${name}: volume ${src} not declared`);
      }
      for (const h of [...hostsOf(s.environment?.NATS_URL), ...hostsOf(s.environment?.REDIS_SENTINELS)]) if (!compose.services[h]) problems.push(`${name}: no service ${h}`);
    }
    // Secret files are the operator's to write (deploy/README.md); they live in the ignored deploy/secrets/.
    for (const [name, sec] of Object.entries(compose.secrets ?? {})) if (!sec.file.startsWith('./secrets/')) problems.push(`secret ${name}: ${sec.file}`);
    expect(problems).toEqual([]);
  });
});

describe('deploy/k8s', () => {
  it('lists every manifest in kustomization.yaml', () => {
    const kustomization = f.yamlDocs(path.join(K8S, 'kustomization.yaml'))[0] as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual(k8sFiles.map((p) => path.basename(p)).sort());
  });

  it('has valid kinds and apiVersions, consistent references, and a PodDisruptionBudget per workload', () => {
    expect([...checkShapes(k8s), ...checkReferences(k8s), ...checkDisruptionBudgets(k8s)]).toEqual([]);
    expect(k8s.find((o) => o.kind === 'StatefulSet' && o.metadata?.name === 'nats')?.spec?.replicas).toBe(3);
  });

  it('gives runtime nodes their pod name as a stable id, and runs adagg as non-root', () => {
    const node = adaggContainers(k8s).find(({ container }) => container.args?.[0] === 'node');
    expect(node?.workload.kind).toBe('StatefulSet');
    expect(node?.container.args).not.toContain('--id');
    expect(node?.container.env?.find((e) => e.name === 'ADAGG_NODE_ID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    for (const { workload, container } of adaggContainers(k8s)) {
      expect(container.command, 'the image ENTRYPOINT runs').toBeUndefined();
      expect(workload.spec?.template?.spec?.securityContext?.runAsNonRoot).toBe(true);
      expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
    }
  });
});
