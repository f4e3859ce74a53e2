# pyfleet: Fastify service + a pool of persistent Python workers.
#
#   docker build -t pyfleet .
#   docker run --rm -p 5000:5000 --stop-timeout 30 pyfleet
#
# Two stages on node:20-bookworm-slim:
#   build   - npm ci (with dev dependencies), tsc -> dist/, then prune to production dependencies
#   runtime - Debian's python3 + msgpack + defusedxml + tini, dist/, workers/, production node_modules;
#             runs as the unprivileged `node` user (uid 1000), tini as PID 1 forwards SIGTERM to Node,
#             which drains admitted calls, stops the workers and exits 0.
# BuildKit syntax is limited to RUN --mount=type=cache (Docker 23+ builds with BuildKit by default;
# buildah and podman support it too); no RUN heredocs and no COPY --link, which buildah 1.28 lacks.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# This stage has no Python: the postinstall hook (scripts/setup-python.mjs) must not look for one.
ENV PYFLEET_SKIP_PYTHON_SETUP=1 \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
# Dependencies first: this layer is reused until package*.json or the postinstall script change.
COPY package.json package-lock.json ./
COPY scripts/setup-python.mjs scripts/setup-python.mjs
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev \
 && find node_modules -depth -type d -empty -delete \
 && rm -f dist/*.map dist/*/*.map

# ---------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# Python for the workers and tini for PID 1, from Debian (no pip, no compilers, no PyPI at build time).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-msgpack python3-defusedxml tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && /usr/bin/python3 -c 'import msgpack, defusedxml' \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && find / -xdev -perm /6000 -type f -exec chmod a-s {} +
# Above: the service needs neither a package manager at run time nor setuid/setgid programs (su, passwd,
# mount...), so a compromised task finds neither. The base layers still hold npm's files: this hides
# them, it does not shrink the image. To build on the same base every time, pin it by digest:
#   docker build --build-arg NODE_IMAGE=node:20-bookworm-slim@sha256:<digest> -t pyfleet .
# That fixes the base layer only: the layers above still differ from build to build (file times,
# the byte-compiled workers' headers, Debian's current package versions), so the image is not
# bit-for-bit reproducible.

WORKDIR /app
LABEL org.opencontainers.image.title="pyfleet" \
      org.opencontainers.image.description="Fastify service that runs Python tasks on a warm, bounded pool of workers" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="0.1.0"
# SHUTDOWN_GRACE_MS 5 s (the server's default is 10 s): the drain, the workers' stop and the exit then
# fit a plain `docker stop`, whose default timeout is 10 s; compose and kubernetes.yaml give 30 s and set 10 s.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=5000 \
    PYTHON=/usr/bin/python3 \
    POOL_SIZE=4 \
    SHUTDOWN_GRACE_MS=5000 \
    LOG_LEVEL=info \
    PYTHONDONTWRITEBYTECODE=1

# Code is owned by root and read-only for the service user. workers/ is made readable whatever the
# checkout's umask and byte-compiled here, so workers start without writing __pycache__ (the image
# also runs with a read-only root filesystem).
COPY package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY workers ./workers
RUN chmod -R a+rX package.json workers \
 && python3 -m compileall -q workers

USER 1000:1000
EXPOSE 5000
# /ready: 200 while at least one worker can take calls and the server is not draining. Docker runs the
# first check one interval after start (ready takes ~2 s), hence 5 s; Docker >= 25 could add
# --start-interval=1s, which buildah 1.28 (podman 4.3, used in CI here) rejects.
# The image has no curl; bash's /dev/tcp sends the request and reads the status line: ~4 ms of CPU per
# check, where `node -e "fetch(...)"` took ~200 ms (4 % of a core at this interval).
# --start-period: a worker may take WORKER_START_TIMEOUT_MS (60 s) to import its task modules; raise both together.
# With PROBE_PORT set, the check goes there: clients filling MAX_CONNECTIONS on PORT cannot fail it.
# It asks HOST, or the loopback address when HOST is a wildcard (0.0.0.0, ::): a server bound to one address only
# (HOST=10.0.0.5) does not answer on 127.0.0.1.
# Blanks are trimmed, as the server trims every setting: PROBE_PORT=" " is unset to it, and was no port here.
HEALTHCHECK --interval=5s --timeout=3s --start-period=75s --retries=3 \
  CMD ["bash", "-c", "h=${HOST//[[:space:]]/}; h=${h:-0.0.0.0}; case $h in 0.0.0.0|::) h=127.0.0.1 ;; esac; p=${PROBE_PORT//[[:space:]]/}; [[ -n $p ]] || p=${PORT//[[:space:]]/}; exec 3<>/dev/tcp/$h/${p:-5000} && printf 'GET /ready HTTP/1.0\\r\\nhost: localhost\\r\\n\\r\\n' >&3 && read -t 2 -r status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
# tini is PID 1: it forwards SIGTERM/SIGINT to Node (not to the workers: Node stops them after the
# in-flight calls) and reaps orphans. With the 5 s grace above a plain `docker stop` (10 s) fits the usual
# stop; for longer calls raise both, e.g. --stop-timeout 30 -e SHUTDOWN_GRACE_MS=10000 (see README).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/server.js"]
