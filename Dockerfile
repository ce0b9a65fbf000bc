# One image for every Guichê process: `guiche web`, `worker`, `scheduler`, `migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GUICHE_HOST=0.0.0.0 \
    STORAGE_PATH=/data/storage

WORKDIR /src
# The tree is copied whole: core/guiche/piccolo_migrations is a symlink into it.
COPY . .
RUN pip install . \
    && useradd --system --home-dir /data --create-home guiche \
    && mkdir -p /data/storage && chown -R guiche /data

USER guiche
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["guiche"]
CMD ["web"]
