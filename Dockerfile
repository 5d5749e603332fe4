# strangler: the chat API on the dual-write facade, and the operator CLI.
# Multi-stage: install the locked versions (uv.lock) into a virtualenv, then copy it into a
# slim runtime that runs as a non-root user. SecantusDB and embedded Postgres (the
# "embedded" extra, GPL-2.0 for SecantusDB) stay out: only the runtime dependencies go in.

FROM python:3.11-slim AS build
# The same uv as the Makefile's UV_VERSION.
RUN pip install --no-cache-dir 'uv==0.13.8'
ENV UV_PROJECT_ENVIRONMENT=/opt/strangler \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
# The locked dependencies first (a layer that changes only with the lock), then strangler.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/strangler/bin:$PATH \
    STRANGLER_LOG_FORMAT=json \
    STRANGLER_HOST=0.0.0.0 \
    STRANGLER_PORT=8080
RUN useradd --system --uid 10001 --home-dir /app --create-home strangler
COPY --from=build /opt/strangler /opt/strangler
USER strangler
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["strangler"]
CMD ["serve"]
