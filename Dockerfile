# deployer as a container. README, "The container image", says how to run it; compose.yaml is
# a complete example. Build:
#   docker build -t deployer .
# Any Debian 12 base with python3 and python3-venv works as well, e.g. one built locally with
# debootstrap (`python -m deployer.sandbox base-image`):
#   docker build --network host --build-arg BASE=deployer-base:bookworm -t deployer .
# Through a package mirror: --build-arg PIP_INDEX_URL=https://... (plain http mirrors also
# need --build-arg PIP_TRUSTED_HOST=host:port).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# pip reads these in the RUN steps below when they are given; unset otherwise.
ARG PIP_INDEX_URL
ARG PIP_TRUSTED_HOST

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/deployer/bin:$PATH \
    DEPLOYER_CONFIG=/etc/deployer/deployer.yml \
    HTTP_HOST=127.0.0.1 \
    HTTP_PORT=5000

RUN groupadd --system --gid 10001 deployer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/deployer --create-home \
      --shell /usr/sbin/nologin deployer

# A virtualenv, never the system's pip (python3 -m venv: /usr/bin/python3 on Debian's python,
# /usr/local/bin/python3 on python:3.11-slim). Pinned dependencies first, so that this layer
# stays cached while only deployer's code changes.
COPY requirements.txt /tmp/deployer/
RUN python3 -m venv /opt/deployer \
 && /opt/deployer/bin/pip install --requirement /tmp/deployer/requirements.txt
# Installed as a wheel: the HTML pages and the nginx template ship inside the package.
COPY pyproject.toml README.md /tmp/deployer/
COPY deployer /tmp/deployer/deployer
COPY templates /tmp/deployer/templates
RUN /opt/deployer/bin/pip install --no-deps /tmp/deployer \
 && rm -rf /tmp/deployer

# Non-root. The Docker socket is reached through its group, passed with --group-add at run time
# (its id differs per host).
USER 10001:10001
WORKDIR /var/lib/deployer
# deployer finishes or rolls back the running deployment on SIGINT, then exits (within 10 s).
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('HTTP_HOST', '127.0.0.1'); u.urlopen('http://%s:%s/healthz' % ('127.0.0.1' if h == '0.0.0.0' else h, os.environ.get('HTTP_PORT', '5000')), timeout=3)"]
EXPOSE 5000
CMD ["deployer", "serve"]
