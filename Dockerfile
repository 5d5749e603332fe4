# strangler: the chat API on the dual-write facade, and the operator CLI.
# Multi-stage: build a wheel with its dependencies, then a slim runtime as a non-root user.
# SecantusDB and embedded Postgres (the "embedded" extra, GPL-2.0 for SecantusDB) stay out.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip build \
 && python -m build --wheel --outdir /wheels \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/strangler-*.whl

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STRANGLER_LOG_FORMAT=json \
    STRANGLER_HOST=0.0.0.0 \
    STRANGLER_PORT=8080
RUN useradd --system --uid 10001 --home-dir /app --create-home strangler
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels strangler \
 && rm -rf /wheels
USER strangler
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["strangler"]
CMD ["serve"]
