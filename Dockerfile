# One image for every kamwatch process; the command picks which:
#   docker run kamwatch ingest|signals|alerts|migrate   (also: topics, keys create|revoke, signals rebuild)
# Build from the repository root: docker build -t kamwatch:0.1.0 .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
COPY kamwatch ./kamwatch
RUN python -m pip install --no-cache-dir pip==26.3 \
 && python -m pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --create-home --home-dir /app kamwatch \
 && mkdir -p /var/lib/kamwatch/models && chown -R 10001 /var/lib/kamwatch
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links=/wheels kamwatch && rm -rf /wheels
WORKDIR /app
USER 10001
# prod refuses placeholder secrets at start-up; each service listens on all interfaces in a container.
ENV PYTHONUNBUFFERED=1 \
    KAMWATCH_PROFILE=prod \
    KAMWATCH_LOG_FORMAT=json \
    KAMWATCH_INGEST_HOST=0.0.0.0 \
    KAMWATCH_SIGNALS_HOST=0.0.0.0 \
    KAMWATCH_ALERTS_HOST=0.0.0.0 \
    KAMWATCH_SIGNALS_MODEL_DIR=/var/lib/kamwatch/models
EXPOSE 8001 8002 8003
ENTRYPOINT ["kamwatch"]
CMD ["--help"]
