FROM python:3.11-slim

# ffmpeg converts voice notes (OGG/Opus) to and from what the speech APIs take.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY services ./services
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 botuser \
    && mkdir -p /app/data && chown botuser:botuser /app/data

USER botuser
ENV PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////app/data/bot.db
VOLUME ["/app/data"]
CMD ["python", "-m", "bot"]
