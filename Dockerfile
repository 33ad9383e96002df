# eventswarm's container image: static swarm, probe and localbus on an empty
# base (no shell, no package manager), a CA bundle for mqtts:// and https://
# targets, a non-root user, swarm as the entrypoint. deploy/image builds the
# same image offline as an OCI layout (its test checks this file agrees).
#
#   docker build -t REGISTRY/eventswarm:TAG .
#   docker run --rm REGISTRY/eventswarm:TAG --version
#   docker run --rm --entrypoint /usr/local/bin/probe REGISTRY/eventswarm:TAG --target mqtt://broker:1883
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/home/nonroot \
 && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o /rootfs/usr/local/bin/ ./cmd/swarm ./cmd/probe ./cmd/localbus \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && install -d -m 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/home/nonroot && chmod 700 /rootfs/home/nonroot

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/swarm"]
