# certop: a static, non-root image (distroless).
#   docker build -t certop:$VERSION .   (the chart's appVersion, charts/certop/Chart.yaml)
FROM rust:1.95-bookworm AS build
WORKDIR /src
# aws-lc-rs builds its C core with cmake and clang.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY proto proto
COPY src src
COPY benches benches
COPY examples examples
COPY tests tests
COPY crds crds
RUN cargo build --release --locked --bin certop

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certop /usr/local/bin/certop
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/certop"]
CMD ["run"]
