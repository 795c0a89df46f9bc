# The worker image: the project with its runtime dependencies only (no moto, no test tools).
# Built by docker-compose.yml (`docker compose build worker`); .dockerignore keeps the context small.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app
COPY pyproject.toml README.md ./
COPY activities/ activities/
COPY workflows/ workflows/
COPY models/ models/
COPY cli/ cli/
COPY worker.py starter.py ./
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

RUN useradd --create-home --home-dir /home/scaleout --uid 10001 --user-group --shell /usr/sbin/nologin scaleout
USER scaleout

# Run from /app, so the imports (and activities/server.js) come from this source tree. SIGTERM (docker stop)
# makes worker.py drain for 30 s; docker-compose.yml's stop_grace_period allows for that.
CMD ["python", "worker.py"]
