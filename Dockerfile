# mlchaos sidecar image: this repository's package and its runtime dependencies only (no test or load
# tools), run as a non-root user. Build from the repository root:
#   docker build -t mlchaos:0.1.0 .
# Run it beside a model server that listens on 127.0.0.1:8080 (Kubernetes: deploy/base):
#   docker run --rm --network container:MODEL -v "$PWD/policy.yaml:/etc/mlchaos/policy.yaml:ro" mlchaos:0.1.0

FROM python:3.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A C compiler for mypyc, which compiles the data plane's per-request modules (setup.py); it stays in
# this stage. Debian's current versions: the base image pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY proxy ./proxy
# A virtual environment holding the package and its runtime dependencies (and not the installers, pip and
# setuptools), copied whole to the final stage: same base image, so the same interpreter path. The build
# fails if the data plane did not compile: the image would be 25% slower without saying so.
RUN python -m venv /opt/mlchaos \
 && /opt/mlchaos/bin/pip install --no-cache-dir . \
 && /opt/mlchaos/bin/pip uninstall --yes pip setuptools \
 && /opt/mlchaos/bin/python -c "from proxy.dataplane import build, build_note; assert build() == 'compiled', build_note()"

FROM python:3.13-slim-bookworm
LABEL org.opencontainers.image.title="mlchaos" \
      org.opencontainers.image.description="Chaos-engineering sidecar proxy for model servers" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/mlchaos/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLCHAOS_HEALTHCHECK_URL=http://127.0.0.1:9000/healthz
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mlchaos
COPY --from=build /opt/mlchaos /opt/mlchaos
# The default policy forwards everything and runs no experiment; mount another over /etc/mlchaos.
COPY deploy/docker/policy.yaml /etc/mlchaos/policy.yaml
USER 10001:10001
EXPOSE 8000 9000
# The admin API's /healthz; set MLCHAOS_HEALTHCHECK_URL when the policy moves the admin API.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(os.environ['MLCHAOS_HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["mlchaos", "run"]
CMD ["--config", "/etc/mlchaos/policy.yaml"]
