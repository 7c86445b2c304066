# mlchaos sidecar image: runtime dependencies only, non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home mlchaos
COPY policies/demo.yaml /etc/mlchaos/policy.yaml
USER 10001
EXPOSE 8000 9000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["mlchaos", "run"]
CMD ["--config", "/etc/mlchaos/policy.yaml"]
