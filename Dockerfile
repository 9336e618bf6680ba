# upsbridge container image.
#
#   docker build -t upsbridge --build-arg VERSION=v1.0.0 .
#   docker run -d --name upsbridge \
#     -v ./upsbridge.yaml:/etc/upsbridge/upsbridge.yaml:ro \
#     -v upsbridge-state:/var/lib/upsbridge upsbridge
#
# Configuration: a mounted file (/etc/upsbridge/upsbridge.yaml, or the path in
# UPSBRIDGE_CONFIG) and UPSBRIDGE_* environment variables ("__" between
# levels: UPSBRIDGE_MQTT__URL=tcp://mosquitto:1883). Secrets are best passed
# as files (password_file: /run/secrets/...).
#
# USB UPS (usbhid source): pass the device and let the non-root user open it:
#   --device /dev/bus/usb/001/004   (or - /dev/bus/usb:/dev/bus/usb in compose)
#   --group-add <gid of the device node>  (a host udev rule can give the UPS a
#   stable group, see docs/deployment.md); the image itself runs as uid 10001.
#
# Health: HEALTHCHECK runs `upsbridge health`, which reads http.listen from
# the config and GETs /healthz. The image turns the endpoint on at
# 0.0.0.0:9105 (UPSBRIDGE_HTTP__LISTEN); set that variable to another
# address to move it.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same script CI runs outside a container (test/ci-deploy.sh).
RUN sh deploy/docker/build.sh /out/upsbridge "${VERSION}"

FROM debian:${DEBIAN_RELEASE}-slim
# libusb for the USB HID source; CA certificates for mqtts:// and HTTPS
# notifiers; tzdata so notification times can follow TZ.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libusb-1.0-0 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 upsbridge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/upsbridge --shell /usr/sbin/nologin upsbridge \
 && mkdir -p /etc/upsbridge /var/lib/upsbridge \
 && chown 10001:10001 /var/lib/upsbridge
COPY --from=build /out/upsbridge /usr/local/bin/upsbridge
COPY deploy/config/container.yaml /etc/upsbridge/upsbridge.yaml

ENV UPSBRIDGE_CONFIG=/etc/upsbridge/upsbridge.yaml \
    UPSBRIDGE_HTTP__LISTEN=0.0.0.0:9105 \
    UPSBRIDGE_BRIDGE__STATE_DIR=/var/lib/upsbridge
USER 10001:10001
WORKDIR /var/lib/upsbridge
VOLUME ["/var/lib/upsbridge"]
EXPOSE 9105
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["upsbridge", "health"]
ENTRYPOINT ["upsbridge"]
CMD ["run"]
