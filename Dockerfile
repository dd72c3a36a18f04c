# costwarden image for docker-compose.yml (workers, API, migrations).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY costwarden ./costwarden
COPY streams ./streams
COPY budgets ./budgets
COPY connectors ./connectors
COPY alerts ./alerts
RUN pip install --no-cache-dir ".[distributed]"
RUN useradd --create-home costwarden && mkdir -p /var/lib/costwarden && chown costwarden /var/lib/costwarden
USER costwarden
ENV COSTWARDEN_DATA_DIR=/var/lib/costwarden
CMD ["costwarden", "worker"]
