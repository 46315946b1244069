# One image for every role of ops_platform: the gRPC code server (default command), the
# daemon, the webserver, Celery workers and the containers the Docker/K8s run launchers start.
#
# Built without a container registry (see deploy/image/build.sh, `make image`): the base is
# Debian bookworm made with mmdebstrap and `podman import`, the Python packages come from a
# wheelhouse made on the host, installed with `pip --no-index` while the build has no network.
ARG BASE_IMAGE=localhost/ops-platform-base:bookworm

FROM ${BASE_IMAGE} AS build
COPY wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/ops_platform \
    && /opt/ops_platform/bin/pip install --no-index --no-cache-dir --find-links /wheelhouse \
       "ops_platform[celery,docker,k8s]" \
    && find /opt/ops_platform -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ENV PATH=/opt/ops_platform/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/var/lib/ops_platform/dagster_home \
    OPS_DATA_DIR=/var/lib/ops_platform/data
RUN groupadd --system --gid 10001 ops \
    && useradd --system --uid 10001 --gid ops --home-dir /var/lib/ops_platform ops \
    && mkdir -p /var/lib/ops_platform/dagster_home /var/lib/ops_platform/data /opt/ops_platform/app \
    && touch /var/lib/ops_platform/dagster_home/dagster.yaml \
    && chown -R ops:ops /var/lib/ops_platform
COPY --from=build /opt/ops_platform /opt/ops_platform
COPY workspace.yaml /opt/ops_platform/app/
WORKDIR /opt/ops_platform/app
USER 10001:10001
EXPOSE 3030 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "3030"]
ENTRYPOINT ["tini", "--"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "ops_platform.definitions"]
