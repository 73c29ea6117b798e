# syntax=docker/dockerfile:1
#
# The sdworker runtime builder: builds the runtime disk image for the real webui (`sdworker image build
# --spec examples/runtime.yaml`). It must run on top of the base image, because the runtime's venv is made
# by, and links to, the base image's /usr/bin/python3.10 (pyvenv.cfg home = /usr/bin): a venv made by any
# other interpreter would not start in the pods. The base image alone cannot build it (issue 12, item 9): it
# has no python3.10-venv (ensurepip), no git and no e2fsprogs. This image adds exactly what the builder runs
# (tests/unit/test_images_dockerfiles.py checks it against every executable images/sdworker_images calls):
#   python3.10-venv   `python3.10 -m venv` with pip (fetch.create_venv, fetch.pip_install)
#   git               shallow fetch + `git archive` of webui, its repositories and extensions (fetch.git_export)
#   e2fsprogs         mkfs.ext4, debugfs, e2fsck (ext4.py)
#   ca-certificates   HTTPS to GitHub, PyPI, download.pytorch.org and Hugging Face (fetch.download)
#   python3.11        runs the builder itself (sdworker needs Python >= 3.11), in its own venv /opt/sdworker
# Ubuntu 22.04's e2fsprogs is 1.46.5: images are valid and their content digest (the manifest, which is what
# nodes verify) is the same as from any builder, but byte-identical disk.raw across builders needs >= 1.47.0
# (sorted directory population; images/README.md "Reproducible").
#
# Build from the repository root, after the base image:
#   docker build -f images/Dockerfile.base -t sd-base:cuda12.1-py3.10 images/
#   docker build -f images/Dockerfile.builder -t sd-builder:cuda12.1-py3.10 .
# Run (network needed; the output lands in the mounted directory, owned by uid 10001):
#   docker run --rm -v "$PWD/examples:/spec:ro" -v "$PWD/out:/build/out" sd-builder:cuda12.1-py3.10 \
#       build --spec /spec/runtime.yaml --out /build/out
FROM python:3.11.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY content/ content/
COPY daemonset/ daemonset/
COPY tools/ tools/
COPY images/ images/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM sd-base:cuda12.1-py3.10
USER root
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3.10-venv \
        python3.11 \
        python3.11-venv \
        git \
        e2fsprogs \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && "$SDWORKER_PYTHON" -m venv --without-pip /tmp/venv-check && rm -rf /tmp/venv-check
COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /wheels/ /tmp/wheels/
# The builder in its own Python 3.11 venv; the test tools in the same wheel do not ship (as in the operator).
RUN python3.11 -m venv /opt/sdworker \
 && /opt/sdworker/bin/pip install --no-cache-dir --constraint /tmp/requirements.lock /tmp/wheels/sdworker-*.whl \
 && rm -rf /tmp/wheels /tmp/requirements.lock /opt/sdworker/bin/sdworker-dev \
        "$(/opt/sdworker/bin/python -c 'import os, sdworker_tools; print(os.path.dirname(sdworker_tools.__file__))')" \
 && /opt/sdworker/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("sdworker_tools") is not None)' \
 && /opt/sdworker/bin/python -c 'from sdworker_images.webui_extension import extension_dir; assert any(extension_dir().rglob("*.py"))' \
 && mkdir -p /build && chown 10001:10001 /build
ENV PATH=/opt/sdworker/bin:$PATH
# The base image's user: the builder needs no root (mkfs.ext4 -d and debugfs work on a file, nothing is mounted).
USER 10001:10001
WORKDIR /build
ENTRYPOINT ["sdworker", "image"]
CMD ["--help"]

LABEL org.opencontainers.image.title="sdworker runtime builder"
