# One image for every component: `agentgate sidecar|injector|approval|...`.
# Build stage compiles TypeScript; the runtime stage has production dependencies only.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY core core
COPY cli cli
COPY sidecar sidecar
COPY injector injector
COPY approval approval
COPY test test
COPY bench bench
RUN npx tsc -p tsconfig.json && rm -rf dist/test dist/bench

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /opt/agentgate
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist dist
# Served at /openapi.json by the approval service (read beside the compiled module).
COPY approval/openapi.json dist/approval/openapi.json
# Non-root, matching the injector's securityContext (runAsNonRoot, read-only root FS).
USER 65532:65532
ENTRYPOINT ["node", "/opt/agentgate/dist/cli/main.js"]
CMD ["--help"]
