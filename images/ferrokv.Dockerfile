# The ferrokv image: `placement` and `store` on an empty base, with exactly the shared
# libraries they link, as the operator's pods run them (`/usr/local/bin/<component>`).
# Built by scripts/images.sh from the staging directory it assembles; the build context is
# that directory, not the checkout.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="ferrokv" \
      org.opencontainers.image.description="TiKV-compatible store and placement driver" \
      org.opencontainers.image.source="https://github.com/ferrokv/ferrokv" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# Binaries, their libraries and the dynamic loader, /etc/passwd and /etc/group, /tmp.
COPY rootfs/ /
# Default data directories, owned by the non-root user (pods mount volumes over them).
COPY --chown=65532:65532 data/ /var/lib/
ENV PATH=/usr/local/bin
USER 65532:65532
# store: gRPC 20160, status 20180; placement: clients 2379, peers 2380.
EXPOSE 2379 2380 20160 20180
CMD ["/usr/local/bin/store", "--help"]
