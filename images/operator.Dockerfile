# The tikv-operator image: the `operator` binary on an empty base, with exactly the shared
# libraries it links and the CA bundle for TLS to the Kubernetes API server. Runs as uid 65532
# and writes nothing, so the chart's read-only root filesystem holds.
# Built by scripts/images.sh from the staging directory it assembles; the build context is
# that directory, not the checkout.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="tikv-operator" \
      org.opencontainers.image.description="Kubernetes operator for ferrokv TikvClusters" \
      org.opencontainers.image.source="https://github.com/ferrokv/ferrokv" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY rootfs/ /
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/operator"]
