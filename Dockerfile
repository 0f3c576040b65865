# One image for every taskgate process: the service, the workers and the migration job.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TASKGATE_HOME=/var/lib/taskgate

WORKDIR /app
COPY pyproject.toml README.md ./
COPY policy ./policy
COPY queue_server ./queue_server
COPY workers ./workers
COPY examples ./examples
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --home-dir /var/lib/taskgate taskgate

USER taskgate
ENTRYPOINT ["taskgate"]
CMD ["--help"]
