/**
 * Structural checks of deploy/k8s for test/ops/deploy-config.test.ts, without a cluster: each
 * function returns the problems it found (empty: fine), so one assertion shows all of them.
 */

/** A Kubernetes object as parsed from YAML (only the fields the checks read). */
export interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: Record<string, unknown> & {
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    serviceName?: string;
    clusterIP?: string;
    replicas?: number;
    template?: { metadata?: { labels?: Record<string, string> }; spec?: PodSpec };
    ports?: Array<{ name?: string; port?: number; targetPort?: number | string }>;
  };
}

export interface Probe {
  httpGet?: { path?: string; port?: number | string };
}

export interface Container {
  name?: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath?: string }; secretKeyRef?: { name?: string; optional?: boolean }; configMapKeyRef?: { name?: string } } }>;
  envFrom?: Array<{ configMapRef?: { name?: string }; secretRef?: { name?: string } }>;
  ports?: Array<{ name?: string; containerPort?: number }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: { allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean };
}

export interface PodSpec {
  containers?: Container[];
  volumes?: Array<{ name?: string; secret?: { secretName?: string }; configMap?: { name?: string } }>;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
}

/** The apiVersion of each kind the manifests may use (stable APIs only). */
export const API_VERSIONS: Readonly<Record<string, string>> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  PodDisruptionBudget: 'policy/v1',
};

export const WORKLOADS = new Set(['Deployment', 'StatefulSet']);

const id = (o: K8sObject): string => `${o.kind ?? '?'}/${o.metadata?.name ?? '?'}`;
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Kind, apiVersion and name of every object. */
export function checkShapes(objects: K8sObject[]): string[] {
  return objects.flatMap((o) => {
    const want = o.kind === undefined ? undefined : API_VERSIONS[o.kind];
    if (want === undefined) return [`${id(o)}: unexpected kind`];
    if (o.apiVersion !== want) return [`${id(o)}: apiVersion ${o.apiVersion} (want ${want})`];
    return o.metadata?.name ? [] : [`${id(o)}: no metadata.name`];
  });
}

/**
 * The references between objects: a workload's selector selects its own pods; Services and PDBs
 * select some workload's pods; targetPorts, probe ports, ConfigMaps, Secrets and a StatefulSet's
 * governing Service exist.
 */
export function checkReferences(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const named = (kind: string, name: string | undefined): K8sObject | undefined => objects.find((o) => o.kind === kind && o.metadata?.name === name);
  const workloads = objects.filter((o) => WORKLOADS.has(o.kind ?? ''));
  for (const w of workloads) {
    const labels = w.spec?.template?.metadata?.labels;
    if (!matches(w.spec?.selector?.matchLabels, labels)) problems.push(`${id(w)}: selector does not match its pod labels`);
    const pod = w.spec?.template?.spec;
    if (w.kind === 'StatefulSet') {
      const svc = named('Service', w.spec?.serviceName);
      if (svc?.spec?.clusterIP !== 'None') problems.push(`${id(w)}: serviceName ${w.spec?.serviceName} is not a headless Service here`);
    }
    for (const c of pod?.containers ?? []) {
      const ports = new Set((c.ports ?? []).flatMap((p) => [p.name, p.containerPort]));
      for (const [kind, probe] of Object.entries({ liveness: c.livenessProbe, readiness: c.readinessProbe, startup: c.startupProbe })) {
        if (probe?.httpGet && !ports.has(probe.httpGet.port)) problems.push(`${id(w)}/${c.name}: ${kind} probe port ${probe.httpGet.port} is not a container port`);
      }
      for (const f of c.envFrom ?? []) {
        if (f.configMapRef && !named('ConfigMap', f.configMapRef.name)) problems.push(`${id(w)}: ConfigMap ${f.configMapRef.name} missing`);
        if (f.secretRef && !named('Secret', f.secretRef.name)) problems.push(`${id(w)}: Secret ${f.secretRef.name} missing`);
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref && ref.optional !== true && !named('Secret', ref.name)) problems.push(`${id(w)}: Secret ${ref.name} (env ${e.name}) missing`);
      }
    }
    for (const v of pod?.volumes ?? []) {
      if (v.secret && !named('Secret', v.secret.secretName)) problems.push(`${id(w)}: volume Secret ${v.secret.secretName} missing`);
      if (v.configMap && !named('ConfigMap', v.configMap.name)) problems.push(`${id(w)}: volume ConfigMap ${v.configMap.name} missing`);
    }
  }
  const selectedWorkload = (selector: Record<string, string> | undefined): K8sObject | undefined =>
    workloads.find((w) => matches(selector, w.spec?.template?.metadata?.labels));
  for (const o of objects) {
    if (o.kind === 'PodDisruptionBudget' && !selectedWorkload(o.spec?.selector?.matchLabels)) problems.push(`${id(o)}: selects no workload`);
    if (o.kind === 'Service') {
      const selector = o.spec?.selector as Record<string, string> | undefined;
      const w = selectedWorkload(selector);
      if (!w) {
        problems.push(`${id(o)}: selects no workload`);
        continue;
      }
      const ports = new Set((w.spec?.template?.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).flatMap((p) => [p.name, p.containerPort])));
      for (const p of o.spec?.ports ?? []) if (!ports.has(p.targetPort ?? p.port)) problems.push(`${id(o)}: targetPort ${p.targetPort} not on ${id(w)}`);
    }
  }
  return problems;
}

/** Every workload has a PodDisruptionBudget. */
export function checkDisruptionBudgets(objects: K8sObject[]): string[] {
  const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget');
  return objects
    .filter((o) => WORKLOADS.has(o.kind ?? ''))
    .filter((w) => !pdbs.some((p) => matches(p.spec?.selector?.matchLabels, w.spec?.template?.metadata?.labels)))
    .map((w) => `${id(w)}: no PodDisruptionBudget`);
}

/** The containers running the adagg image (image `adagg`, `adagg:TAG` or `…/adagg:TAG`). */
export function adaggContainers(objects: K8sObject[]): Array<{ workload: K8sObject; container: Container }> {
  return objects
    .filter((o) => WORKLOADS.has(o.kind ?? ''))
    .flatMap((workload) => (workload.spec?.template?.spec?.containers ?? []).map((container) => ({ workload, container })))
    .filter(({ container }) => /(?:^|\/)adagg(?::[\w.-]+)?$/.test(container.image ?? ''));
}
