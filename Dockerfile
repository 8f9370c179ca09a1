# deployer as a container. Build: docker build -t deployer .
# Run (the socket's group id differs per host, so it is added at run time):
#   docker run -d --name deployer --network host \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /etc/deployer:/etc/deployer:ro -v /var/lib/deployer:/var/lib/deployer \
#     -e DEPLOYER_TOKEN deployer
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEPLOYER_CONFIG=/etc/deployer/deployer.yml \
    HTTP_HOST=127.0.0.1 \
    HTTP_PORT=5000

WORKDIR /app
COPY requirements.txt ./
RUN python -m pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY deployer ./deployer
COPY templates ./templates
COPY config/deployer.yml /etc/deployer/deployer.yml
RUN python -m pip install --no-cache-dir --no-deps -e . \
 && useradd --system --uid 10001 --home-dir /var/lib/deployer --create-home deployer

# Non-root; the Docker socket is reached through the group passed with --group-add.
USER deployer
WORKDIR /var/lib/deployer
# deployer finishes or rolls back the running deployment on SIGINT, then exits.
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '5000'), timeout=3)"]
EXPOSE 5000
CMD ["deployer", "serve"]
