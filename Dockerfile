# The worker image: the project with its runtime dependencies only (no moto, no test tools).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY activities ./activities
COPY workflows ./workflows
COPY models ./models
COPY cli ./cli
COPY app ./app
COPY worker.py starter.py ./
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app worker

USER worker
CMD ["python", "worker.py"]
