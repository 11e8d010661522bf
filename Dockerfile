# One multi-stage Dockerfile for the four services:
#   docker build --build-arg SERVICE=gateway -t async-micro/gateway .
# The dependency layer is built from the manifests alone (with stub sources),
# so editing code rebuilds only the last layers.

# Not older than the workspace's rust-version (Cargo.toml; a test checks).
# Exactly the toolchain link-layout/*.order were written with: symbol names,
# and so the code layout they give, depend on it (link-layout/mod.rs).
FROM rust:1.95.0-slim-bookworm AS builder
# make: jemalloc, the services' allocator, builds with its own configure and
# make (the slim image has a C compiler but no make). Unpinned: bookworm's
# make is the one its point releases ship.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# 1. Dependencies: manifests plus empty targets, compiled once and cached.
#    .cargo/config.toml holds jemalloc's compiled-in options.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY shared/Cargo.toml shared/
COPY gateway/Cargo.toml gateway/
COPY backend/Cargo.toml backend/
COPY product/Cargo.toml product/
COPY worker/Cargo.toml worker/
COPY trace-view/Cargo.toml trace-view/
COPY loadgen/Cargo.toml loadgen/
COPY tests/Cargo.toml tests/
RUN for crate in shared tests; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
 && for svc in gateway backend product worker trace-view; do \
      mkdir -p "$svc/src" && touch "$svc/src/lib.rs" && echo 'fn main() {}' > "$svc/src/main.rs"; \
    done \
 && mkdir -p loadgen/src/bin && echo 'fn main() {}' > loadgen/src/main.rs \
 && echo 'fn main() {}' > loadgen/src/bin/broker_ceiling.rs \
 && cargo build --release --locked -p gateway -p backend -p product -p worker \
 && rm -rf shared/src gateway/src backend/src product/src worker/src
# (tests/, trace-view/ and loadgen/ keep their stubs: they are workspace
# members, but no image needs them.)

# 2. The sources: only our crates recompile. The services' build scripts
#    link by link-layout/ (release binaries' code laid out by use).
COPY link-layout link-layout
COPY shared shared
COPY gateway gateway
COPY backend backend
COPY product product
COPY worker worker
RUN touch shared/src/lib.rs gateway/src/*.rs backend/src/*.rs product/src/*.rs worker/src/*.rs \
 && cargo build --release --locked -p gateway -p backend -p product -p worker

# 3. Runtime: glibc and nothing else (no shell, no package manager), non-root
#    (65532 is distroless's "nonroot" user).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
COPY --from=builder /src/target/release/${SERVICE} /app/service
USER 65532:65532
# The nonroot user's home: without DATABASE_URL, backend and product keep
# their SQLite file under data/ here (compose and k8s give them PostgreSQL).
WORKDIR /home/nonroot
# The binary probes its own /health on $PORT: no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/app/service", "--healthcheck"]
ENTRYPOINT ["/app/service"]
