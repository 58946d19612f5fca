# mailgate in a container: the static musl binary on an empty (scratch)
# image, run as an unprivileged user. docs/deployment.md explains the
# volumes, the ports and how the real client address reaches mailgate
# (host networking, or a proxy speaking the PROXY protocol).
#
# Build the binary first, on the host (no compiler in the image):
#   scripts/build-static x86_64       # or aarch64, for an arm64 image
#   cp target-dist/x86_64-unknown-linux-musl/dist/mailgate dist/mailgate
#   scripts/build-plugins && cp plugins/target/wasm32-wasip2/release/sieve.wasm dist/
#   docker build -t mailgate .
# Run:
#   docker run -d --name mailgate --network host \
#     -v /srv/mailgate/etc:/etc/mailgate:ro -v /srv/mailgate/data:/var/lib/mailgate \
#     mailgate
# The configuration must say `data_dir = "/var/lib/mailgate"`, and the
# data volume must belong to uid 10025 (`chown -R 10025:10025 /srv/mailgate/data`).

# A tiny first stage only to write the passwd and group files and the
# empty directories; nothing of it but those files is kept.
FROM busybox:1.37-musl AS files
RUN mkdir -p /out/etc /out/var/lib/mailgate /out/etc/mailgate /out/tmp \
 && echo 'mailgate:x:10025:10025:mailgate:/var/lib/mailgate:/nonexistent' > /out/etc/passwd \
 && echo 'mailgate:x:10025:' > /out/etc/group \
 && chown 10025:10025 /out/var/lib/mailgate \
 && chmod 700 /out/var/lib/mailgate \
 && chmod 1777 /out/tmp

FROM scratch
COPY --from=files /out/ /
# CA certificates for the relay's verified TLS and MTA-STS: mount the
# host's (-v /etc/ssl/certs:/etc/ssl/certs:ro) or COPY a bundle here.
COPY dist/mailgate /usr/local/bin/mailgate
# The system Sieve plugin: users' scripts run at delivery (docs/sieve.md);
# the server finds it at this path when `[sieve] plugin` is not set.
COPY dist/sieve.wasm /usr/lib/mailgate/sieve.wasm
USER 10025:10025
VOLUME ["/var/lib/mailgate", "/etc/mailgate"]
# SMTP, submission (STARTTLS and implicit TLS), POP3, POP3S, IMAP, IMAPS.
# Ports below 1024: Docker lets an unprivileged user bind them inside the
# container (net.ipv4.ip_unprivileged_port_start=0 is its default since
# 20.10); with another engine, listen on high ports and map them.
EXPOSE 25 465 587 110 995 143 993
ENV MAILGATE_CONFIG=/etc/mailgate/mailgate.toml
# `mailgate healthcheck` asks the server's /healthz/ready (the [listen]
# metrics address must be set); exit 0 ready, 1 not.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/mailgate", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mailgate"]
CMD ["serve"]
