# syntax=docker/dockerfile:1
# The adagg image: one image for every role, chosen by the command (ENTRYPOINT is the adagg CLI).
#
#   docker build -t adagg .
#   docker run adagg gateway                 # the default command: HTTP/WebSocket gateway on :8080
#   docker run adagg node --id node1         # a runtime node (or ADAGG_NODE_ID, e.g. a pod name)
#   docker run adagg nodes                   # an operator command (needs REDIS_URL)
#   docker run -v "$PWD/logs:/logs:ro" adagg ingest /logs/clicks.log
#
# Both need NATS_URL and REDIS_URL; the gateway on 0.0.0.0 also needs ADAGG_TOKENS_FILE
# (docs/security.md). deploy/compose.yaml and deploy/k8s/ run it; deploy/README.md explains them.

# Node 20 is what the tests run on; package.json's engines also allow 22.13+ and 24+
# (docker build --build-arg NODE_VERSION=22 .).
ARG NODE_VERSION=20

# --- build: the TypeScript sources compiled to dist/ (npm run build: tsc, then the worker
# bootstrap and the dashboard's static files, which tsc does not emit) ---------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-build-assets.mjs scripts/
COPY src/ src/
RUN npm run build && rm -f dist/.tsbuildinfo

# --- deps: production dependencies only (pino-pretty included: pretty logs on a terminal) ---------
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- runtime: node, the production dependencies, dist/ and bin/; nothing else -------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Owned by root and read-only for the service user: the process cannot rewrite its own code.
# package.json stays: its "type": "module" makes dist/*.js ES modules.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin/ ./bin/
# The adagg command inside the container runs the same dist/: docker compose exec gateway adagg placement
RUN ln -s /app/bin/adagg.mjs /usr/local/bin/adagg
# The node image's unprivileged user "node", by number so Kubernetes can verify runAsNonRoot.
# Nodes and gateways write nothing to disk; a follower of log files (adagg ingest --follow) keeps
# its offsets in --state FILE, which must be on a writable volume.
USER 1000:1000
EXPOSE 8080
# Liveness of the gateway (the default command). A runtime node has no gateway port, only /metrics
# on ADAGG_METRICS_PORT: compose and Kubernetes check that instead (deploy/compose.yaml,
# deploy/k8s/nodes.yaml).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ADAGG_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM stops a node or gateway in order (final commits) within ADAGG_SHUTDOWN_TIMEOUT_MS (15 s):
# give the container at least that (docker stop -t 30, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["gateway"]
