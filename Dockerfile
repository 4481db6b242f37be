# syntax=docker/dockerfile:1
# bufferd's image: a static binary on distroless (no shell, no package manager),
# running as the nonroot user. One image for every role; the command picks it:
#   docker run IMAGE api | syncer | migrate up | pool add ... | simchain
# The HEALTHCHECK probes the API's /livez; other roles override it (see
# docker-compose.yml). Kubernetes ignores it and uses the chart's probes.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t bufferd .
# Base images may be pinned by digest (FROM image:tag@sha256:...).

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
# The root module's go.mod replaces the client module with ./client.
COPY client/go.mod client/go.sum ./client/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/bufferd ./cmd/bufferd \
	&& /out/bufferd version

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/bufferd/bufferd
LABEL org.opencontainers.image.title="bufferd" \
	org.opencontainers.image.description="UTXO reservation service for Bytom contracts" \
	org.opencontainers.image.source="${SOURCE}" \
	org.opencontainers.image.version="${VERSION}" \
	org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/bufferd /bufferd
# Listen on every interface inside the container (the defaults are loopback).
ENV BUFFERD_ADDR=0.0.0.0:3100 \
	BUFFERD_METRICS_ADDR=0.0.0.0:9100
# The nonroot user of distroless, by number so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 3100 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
	CMD ["/bufferd", "healthcheck", "--url", "http://127.0.0.1:3100/livez"]
ENTRYPOINT ["/bufferd"]
CMD ["api"]
