# The SalesFlow gateway image: Node 24 LTS on Debian slim, production dependencies only, a non-root user,
# no build step (Node runs the TypeScript sources by stripping their types).
#
#   docker build -t salesflow-gateway .                                 the gateway (the last stage)
#   docker build --target demo-upstream -t salesflow-demo-upstream .    the demo SalesFlow API (deploy/)
#   docker run --rm -p 8080:8080 -p 9090:9090 --stop-timeout 30 -e UPSTREAM_URL=http://api:8000 salesflow-gateway
#
# Settings: /etc/gateway/gateway.yaml is config/gateway.yaml; mount your own file over it (or point
# GATEWAY_CONFIG elsewhere). That file reads these environment variables (default in brackets):
#   UPSTREAM_URL [http://127.0.0.1:8000]   REDIS_URL [empty: counters and cache in process]
#   PORT [8080]   ADMIN_PORT [9090]   LOG_LEVEL [info]   JWT_SECRET [demo-secret: set it in production]
#   ADMIN_TOKEN [empty: POST /cache/purge disabled]   SENTRY_DSN [empty: Sentry off]   SENTRY_ENVIRONMENT [production]
# The HEALTHCHECK reads ADMIN_PORT as well, so change the admin port with ADMIN_PORT, not only in the file.
#
# Signals: the ENTRYPOINT is exec form, so node is PID 1 and receives SIGTERM itself; the gateway handles
# SIGTERM/SIGINT (drain, exit 0) and SIGHUP (reload) and starts no child processes, so no init is needed.
# `docker stop` waits 10 s before SIGKILL: give it more than shutdown.drainTimeout (--stop-timeout 30).
#
# test/integration/container.test.ts performs these steps outside Docker (COPY, RUN, ENV, ENTRYPOINT,
# HEALTHCHECK) and checks the result; a change here that it does not understand fails that test.

# Production dependencies, installed in a stage of their own so that npm's cache stays out of the image.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The postinstall script builds tap's plugins only when tap is installed: without devDependencies it does nothing.
RUN npm ci --omit=dev --no-audit --no-fund

# The demo SalesFlow API (deploy/demo-upstream) for deploy/docker-compose.yml; with DATABASE_URL set it keeps
# its leads in Postgres, migrating and seeding with deploy/postgres. It needs every dependency: its page is
# bundled by esbuild with @sentry/browser (devDependencies) on the first request. --ignore-scripts skips the
# postinstall (tap's plugin build). No NODE_ENV=production before this npm ci: it would leave devDependencies out.
FROM node:24-bookworm-slim AS demo-upstream
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY deploy/demo-upstream ./deploy/demo-upstream
COPY deploy/postgres ./deploy/postgres
ENV DEMO_HOST=0.0.0.0 DEMO_PORT=8000
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.DEMO_PORT || 8000) + '/healthz', { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "deploy/demo-upstream/server.ts"]

# The gateway: the default target.
FROM node:24-bookworm-slim AS gateway
ENV NODE_ENV=production GATEWAY_CONFIG=/etc/gateway/gateway.yaml PORT=8080 ADMIN_PORT=9090
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# package.json says "type": "module"; the sources are read-only for the runtime user (owned by root).
COPY package.json ./
COPY gateway ./gateway
COPY config/gateway.yaml /etc/gateway/gateway.yaml
# The node user of the base image, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080 9090
# Liveness of the process: the admin listener's /healthz (slim images have no curl; node has fetch).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.ADMIN_PORT || 9090) + '/healthz', { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "gateway/main.ts"]
