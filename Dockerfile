FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY workers ./workers
RUN pip install --no-cache-dir .
RUN useradd --create-home dispatcher
USER dispatcher
